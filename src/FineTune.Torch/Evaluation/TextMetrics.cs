using System.Text.Json.Serialization;

namespace FineTune.Torch.Evaluation;

/// <summary>BLEU-4 and ROUGE F1 of one answer against its reference, each in [0, 1].</summary>
internal sealed record TextScores(
    [property: JsonPropertyName("bleu4")] double Bleu4,
    [property: JsonPropertyName("rouge1")] double Rouge1,
    [property: JsonPropertyName("rouge2")] double Rouge2,
    [property: JsonPropertyName("rougeL")] double RougeL);

/// <summary>
/// Sentence-level scores of a generated answer against one reference, on text units: every CJK character (Han,
/// kana, Hangul, CJK and full-width punctuation) is a unit of its own, and any other run of non-space characters is
/// one unit (a word). So Chinese text is scored by characters, as the Chinese fine-tuning tools report it, and
/// English by words; nothing is lower-cased.
/// </summary>
internal static class TextMetrics
{
    /// <summary>The units <see cref="Score"/> compares.</summary>
    public static List<string> Units(string text)
    {
        var units = new List<string>();
        var word = new System.Text.StringBuilder();
        void EndWord()
        {
            if (word.Length == 0) return;
            units.Add(word.ToString());
            word.Clear();
        }
        for (var i = 0; i < text.Length; i++)
        {
            var length = char.IsSurrogatePair(text, i) ? 2 : 1;
            var codePoint = char.ConvertToUtf32(text, i);
            if (IsCjk(codePoint))
            {
                EndWord();
                units.Add(text.Substring(i, length));
            }
            else if (char.IsWhiteSpace(text, i)) EndWord();
            else word.Append(text, i, length);
            i += length - 1;
        }
        EndWord();
        return units;
    }

    private static bool IsCjk(int c) =>
        c is >= 0x2E80 and <= 0x9FFF        // radicals, CJK punctuation, kana, CJK unified ideographs (and ext. A)
            or >= 0xAC00 and <= 0xD7AF      // Hangul syllables
            or >= 0xF900 and <= 0xFAFF      // compatibility ideographs
            or >= 0xFE30 and <= 0xFE4F      // CJK compatibility forms
            or >= 0xFF00 and <= 0xFFEF      // full-width and half-width forms (，！？ etc.)
            or >= 0x20000 and <= 0x3FFFF;   // ideograph extensions B onwards

    public static TextScores Score(string answer, string reference)
    {
        var hypothesis = Units(answer);
        var expected = Units(reference);
        return new TextScores(Bleu4(hypothesis, expected), RougeN(hypothesis, expected, 1),
            RougeN(hypothesis, expected, 2), RougeL(hypothesis, expected));
    }

    /// <summary>
    /// NLTK's <c>sentence_bleu(reference, hypothesis)</c> with the default weights (0.25 each for 1- to 4-grams) and
    /// <c>SmoothingFunction().method3</c> (NIST geometric smoothing), as LLaMA-Factory scores predictions. p_n = the
    /// hypothesis' n-grams matched in the reference, each counted at most as often as the reference has it (clipping),
    /// over the hypothesis' n-gram count (at least 1). An order with no match gets 1 / (2^k * that count),
    /// k = 1, 2, ... for the first, second... such order. No matching unigram at all scores 0. Brevity penalty: 1 when
    /// the hypothesis is longer than the reference, else exp(1 - r / c) (0 for an empty hypothesis).
    /// BLEU = BP * exp(sum 0.25 * ln p_n).
    /// </summary>
    public static double Bleu4(IReadOnlyList<string> hypothesis, IReadOnlyList<string> reference)
    {
        const int order = 4;
        var logSum = 0.0;
        var smoothing = 1;
        for (var n = 1; n <= order; n++)
        {
            var hypothesisGrams = NGrams(hypothesis, n);
            var referenceGrams = NGrams(reference, n);
            var matched = hypothesisGrams.Sum(g => Math.Min(g.Value, referenceGrams.GetValueOrDefault(g.Key)));
            var total = Math.Max(1, hypothesisGrams.Values.Sum());
            if (n == 1 && matched == 0) return 0;
            double precision;
            if (matched > 0) precision = (double)matched / total;
            else precision = 1.0 / (Math.Pow(2, smoothing++) * total);
            logSum += Math.Log(precision) / order;
        }
        double c = hypothesis.Count, r = reference.Count;
        var brevity = c > r ? 1.0 : c == 0 ? 0.0 : Math.Exp(1 - r / c);
        return brevity * Math.Exp(logSum);
    }

    /// <summary>
    /// ROUGE-N F1: overlap = the n-grams the two share, each counted min(times in answer, times in reference);
    /// P = overlap / answer n-grams, R = overlap / reference n-grams, F1 = 2PR / (P + R), 0 when either is 0.
    /// </summary>
    public static double RougeN(IReadOnlyList<string> hypothesis, IReadOnlyList<string> reference, int n)
    {
        var hypothesisGrams = NGrams(hypothesis, n);
        var referenceGrams = NGrams(reference, n);
        var overlap = hypothesisGrams.Sum(g => Math.Min(g.Value, referenceGrams.GetValueOrDefault(g.Key)));
        return F1(overlap, hypothesisGrams.Values.Sum(), referenceGrams.Values.Sum());
    }

    /// <summary>ROUGE-L F1: P = LCS / answer units, R = LCS / reference units (longest common subsequence).</summary>
    public static double RougeL(IReadOnlyList<string> hypothesis, IReadOnlyList<string> reference) =>
        F1(LongestCommonSubsequence(hypothesis, reference), hypothesis.Count, reference.Count);

    private static double F1(int overlap, int hypothesisCount, int referenceCount)
    {
        if (overlap == 0 || hypothesisCount == 0 || referenceCount == 0) return 0;
        var precision = (double)overlap / hypothesisCount;
        var recall = (double)overlap / referenceCount;
        return 2 * precision * recall / (precision + recall);
    }

    public static int LongestCommonSubsequence(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var previous = new int[b.Count + 1];
        var current = new int[b.Count + 1];
        for (var i = 1; i <= a.Count; i++)
        {
            for (var j = 1; j <= b.Count; j++)
                current[j] = a[i - 1] == b[j - 1] ? previous[j - 1] + 1 : Math.Max(previous[j], current[j - 1]);
            (previous, current) = (current, previous);
        }
        return previous[b.Count];
    }

    private static Dictionary<string, int> NGrams(IReadOnlyList<string> units, int n)
    {
        var grams = new Dictionary<string, int>(StringComparer.Ordinal);
        // A control character as separator: decoded answers do not contain it, so distinct n-grams stay distinct.
        for (var i = 0; i + n <= units.Count; i++)
        {
            var key = string.Join('\u0001', units.Skip(i).Take(n));
            grams[key] = grams.GetValueOrDefault(key) + 1;
        }
        return grams;
    }
}
