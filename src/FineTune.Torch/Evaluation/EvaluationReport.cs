using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;

namespace FineTune.Torch.Evaluation;

/// <summary>One prompt of the report, the tuned model's answer, and the base model's (with compare_base).</summary>
internal sealed record EvaluationAnswer(
    [property: JsonPropertyName("prompt")] string Prompt,
    [property: JsonPropertyName("answer")] string Answer,
    [property: JsonPropertyName("tokens")] int Tokens,
    [property: JsonPropertyName("finish_reason")] string FinishReason,
    [property: JsonPropertyName("base_answer"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    string? BaseAnswer = null);

/// <summary>Mean scores over the sample, in percent (0-100), as LLaMA-Factory reports them.</summary>
internal sealed record MeanScores(
    [property: JsonPropertyName("bleu4")] double Bleu4,
    [property: JsonPropertyName("rouge1")] double Rouge1,
    [property: JsonPropertyName("rouge2")] double Rouge2,
    [property: JsonPropertyName("rougeL")] double RougeL)
{
    public static MeanScores Of(IReadOnlyList<TextScores> scores) => new(
        Percent(scores.Average(s => s.Bleu4)), Percent(scores.Average(s => s.Rouge1)),
        Percent(scores.Average(s => s.Rouge2)), Percent(scores.Average(s => s.RougeL)));

    private static double Percent(double share) => Math.Round(share * 100, 2);
}

/// <summary>The sample's mean scores: the tuned model's, and the base model's with compare_base.</summary>
internal sealed record SampleSummary(
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("tuned")] MeanScores Tuned,
    [property: JsonPropertyName("base"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    MeanScores? Base);

/// <summary>One sampled validation example: prompt, reference, answers and their scores (in [0, 1]).</summary>
internal sealed record SampleAnswer(
    [property: JsonPropertyName("example")] int Example,
    [property: JsonPropertyName("prompt")] string Prompt,
    [property: JsonPropertyName("reference")] string Reference,
    [property: JsonPropertyName("answer")] string Answer,
    [property: JsonPropertyName("scores")] TextScores Scores,
    [property: JsonPropertyName("base_answer"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    string? BaseAnswer,
    [property: JsonPropertyName("base_scores"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    TextScores? BaseScores);

/// <summary>
/// report.json. Loss, perplexity and accuracy are null when there is no validation set; sample is null when no
/// example was sampled; base names the model before training when compare_base is on.
/// </summary>
internal sealed record EvaluationReport(
    [property: JsonPropertyName("loss")] double? Loss,
    [property: JsonPropertyName("perplexity")] double? Perplexity,
    [property: JsonPropertyName("token_accuracy")] double? TokenAccuracy,
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("tokens")] long Tokens,
    [property: JsonPropertyName("base")] string? Base,
    [property: JsonPropertyName("answers")] IReadOnlyList<EvaluationAnswer> Answers,
    [property: JsonPropertyName("sample")] SampleSummary? Sample,
    [property: JsonPropertyName("sample_answers")] IReadOnlyList<SampleAnswer> SampleAnswers,
    [property: JsonPropertyName("plots")] IReadOnlyList<string> Plots)
{
    public static EvaluationReport Create(ValidationScore score, IReadOnlyList<EvaluationAnswer> answers,
        IReadOnlyList<SampleExample> sample, IReadOnlyList<string> sampleAnswers, BaseAnswers? baseAnswers,
        IReadOnlyList<string> plots)
    {
        var withBase = answers.Select((a, i) => a with { BaseAnswer = baseAnswers?.Prompts[i] }).ToList();
        var scored = sample.Select((s, i) =>
        {
            var baseAnswer = baseAnswers?.Sample[i];
            return new SampleAnswer(s.Index, s.Prompt, s.Reference, sampleAnswers[i],
                TextMetrics.Score(sampleAnswers[i], s.Reference), baseAnswer,
                baseAnswer is null ? null : TextMetrics.Score(baseAnswer, s.Reference));
        }).ToList();
        var summary = scored.Count == 0 ? null : new SampleSummary(scored.Count,
            MeanScores.Of([.. scored.Select(s => s.Scores)]),
            baseAnswers is null ? null : MeanScores.Of([.. scored.Select(s => s.BaseScores!)]));
        return new EvaluationReport(score.Loss, score.Loss is { } loss ? Math.Exp(loss) : null, score.Accuracy,
            score.Examples, score.Tokens, baseAnswers?.Model, withBase, summary, scored, plots);
    }
}

/// <summary>report.md: the figures, the plots, the answers side by side, and how each figure is computed.</summary>
internal static class EvaluationMarkdown
{
    public static string Write(EvaluationReport report)
    {
        static string Figure(double? value, string format) => value is { } v
            ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";
        var md = new StringBuilder();
        md.Append("# Evaluation\n\n");
        md.Append("| metric | value |\n|---|---|\n");
        md.Append($"| validation loss | {Figure(report.Loss, "0.0000")} |\n");
        md.Append($"| perplexity | {Figure(report.Perplexity, "0.00")} |\n");
        md.Append($"| token accuracy | {Figure(report.TokenAccuracy * 100, "0.00")} % |\n");
        md.Append($"| examples | {report.Examples} |\n");
        md.Append($"| labelled tokens | {report.Tokens} |\n");

        if (report.Plots.Count > 0)
        {
            md.Append("\n## Plots\n\n");
            foreach (var plot in report.Plots) md.Append($"![{Path.GetFileNameWithoutExtension(plot)}]({plot})\n\n");
        }

        if (report.Answers.Count > 0)
        {
            md.Append("\n## Answers\n\n");
            if (report.Base is not null)
            {
                md.Append($"Base: {Cell(report.Base)}.\n\n| prompt | base | tuned |\n|---|---|---|\n");
                foreach (var answer in report.Answers)
                    md.Append($"| {Cell(answer.Prompt)} | {Cell(answer.BaseAnswer!)} | {Cell(answer.Answer)} |\n");
            }
            else
            {
                md.Append("| prompt | answer |\n|---|---|\n");
                foreach (var answer in report.Answers)
                    md.Append($"| {Cell(answer.Prompt)} | {Cell(answer.Answer)} |\n");
            }
        }

        if (report.Sample is { } sample)
        {
            md.Append($"\n## Reference metrics ({sample.Examples} sampled validation examples, greedy answers)\n\n");
            md.Append(sample.Base is null ? "| metric | tuned |\n|---|---|\n"
                : "| metric | base | tuned |\n|---|---|---|\n");
            foreach (var (name, pick) in new (string, Func<MeanScores, double>)[]
                { ("BLEU-4", s => s.Bleu4), ("ROUGE-1", s => s.Rouge1), ("ROUGE-2", s => s.Rouge2),
                    ("ROUGE-L", s => s.RougeL) })
            {
                md.Append($"| {name} | ");
                if (sample.Base is { } baseScores) md.Append($"{Figure(pick(baseScores), "0.00")} | ");
                md.Append($"{Figure(pick(sample.Tuned), "0.00")} |\n");
            }
            md.Append(sample.Base is null
                ? "\n| # | prompt | reference | answer | BLEU-4 | ROUGE-L |\n|---|---|---|---|---|---|\n"
                : "\n| # | prompt | reference | base | tuned | BLEU-4 | ROUGE-L |\n|---|---|---|---|---|---|---|\n");
            foreach (var answer in report.SampleAnswers)
            {
                md.Append($"| {answer.Example} | {Cell(answer.Prompt)} | {Cell(answer.Reference)} | ");
                if (answer.BaseAnswer is not null) md.Append($"{Cell(answer.BaseAnswer)} | ");
                md.Append($"{Cell(answer.Answer)} | {Figure(answer.Scores.Bleu4 * 100, "0.0")} | " +
                    $"{Figure(answer.Scores.RougeL * 100, "0.0")} |\n");
            }
        }

        md.Append('\n').Append(Definitions);
        return md.ToString();
    }

    /// <summary>How every figure above is computed (also in the README's Report section).</summary>
    public const string Definitions = """
        ## How the figures are computed

        - **Validation loss**: mean negative log-likelihood per trained (labelled) token of the validation set;
          **perplexity** is its exponential; **token accuracy** is the share of those tokens that are the model's
          most likely next token.
        - **Units** of the reference metrics: each CJK character (Han, kana, Hangul, CJK and full-width punctuation) is
          one unit, any other run of non-space characters is one unit (a word); no lower-casing.
        - **BLEU-4**: NLTK's `sentence_bleu` with weights (0.25, 0.25, 0.25, 0.25) and `SmoothingFunction().method3`.
          p_n = clipped n-gram matches (each n-gram counted at most as often as in the reference) / the answer's
          n-grams (at least 1); an order without matches gets 1 / (2^k x that count), k = 1, 2, ... in order; no
          matching unigram gives 0. Brevity penalty 1 if the answer is longer than the reference, else
          exp(1 - r/c). BLEU = BP x exp(sum 0.25 ln p_n).
        - **ROUGE-N** (1, 2): overlap = shared n-grams counted min(answer, reference) times; P = overlap / answer
          n-grams, R = overlap / reference n-grams, F1 = 2PR / (P + R) (0 when either is 0). **ROUGE-L**: the same F1
          with the longest common subsequence for overlap and unit counts for the denominators.
        - Scores are per example; the table gives their mean x 100. The sample is drawn with `evaluate.seed`; its
          prompt is everything before the first trained token, its reference the first trained run (stop token
          dropped), answered greedily (repetition_penalty applies) up to `max_new_tokens`.
        - **Smoothed loss**: TensorBoard's debiased exponential moving average with weight 0.9.

        """;

    /// <summary>Text as one table cell. An answer of only line breaks (a base model's noise) would fill the cell
    /// with &lt;br&gt;s, so it is named instead.</summary>
    private static string Cell(string text) => text.Length > 0 && string.IsNullOrWhiteSpace(text)
        ? $"*({text.Length} whitespace characters)*"
        : text.Trim().Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings("<br>");
}

/// <summary>Validation loss and token accuracy (null without labelled tokens), examples, labelled tokens.</summary>
internal sealed record ValidationScore(double? Loss, double? Accuracy, int Examples, long Tokens)
{
    public static ValidationScore None { get; } = new(null, null, 0, 0);
}

/// <summary>A validation example of the sample: its prompt (as ids and as text) and its reference answer.</summary>
internal sealed record SampleExample(int Index, int[] PromptIds, string Prompt, string Reference);

/// <summary>The base model's answers to the pipeline's prompts and to the sample, in their order.</summary>
internal sealed record BaseAnswers(
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("prompts")] IReadOnlyList<string> Prompts,
    [property: JsonPropertyName("sample")] IReadOnlyList<string> Sample);
