using System.Text.Json;

namespace FineTune.Tokenizers;

/// <summary>
/// Hugging Face pre-tokenizers: each cuts a piece of normalized text into smaller pieces (and may rewrite it, like
/// Metaspace does). ByteLevel's byte-to-character mapping is left to the model, which then sees
/// <see cref="MapsBytes"/>.
/// </summary>
internal abstract class HfPreTokenizer
{
    public virtual bool MapsBytes => false;

    public abstract void Split(PreToken piece, List<PreToken> output);

    public static HfPreTokenizer? Read(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return null; // absent or null: none
        var type = json.Str("type");
        switch (type)
        {
            case "ByteLevel":
                return new ByteLevel(json.Flag("add_prefix_space"), json.Flag("use_regex", fallback: true));
            case "Split":
                var behavior = json.Str("behavior") ?? "Isolated";
                if (behavior is not ("Isolated" or "Removed" or "MergedWithPrevious" or "MergedWithNext"
                    or "Contiguous"))
                    throw new HfComponentException($"pre_tokenizer Split behavior '{behavior}' is not supported");
                return new SplitByPattern(HfPattern.Read(json.GetProperty("pattern")), behavior, json.Flag("invert"));
            case "Metaspace":
                var replacement = json.Str("replacement") ?? "▁";
                var scheme = json.Str("prepend_scheme")
                    ?? (json.Flag("add_prefix_space", fallback: true) ? "always" : "never");
                return new Metaspace(replacement, scheme, json.Flag("split", fallback: true));
            case "Sequence":
                var steps = json.GetProperty("pretokenizers").EnumerateArray().Select(Read).OfType<HfPreTokenizer>()
                    .ToArray();
                for (var i = 0; i < steps.Length - 1; i++)
                    if (steps[i].MapsBytes)
                        throw new HfComponentException("pre_tokenizer ByteLevel followed by other pre-tokenizers is " +
                            "not supported");
                return steps.Length == 1 ? steps[0] : new Sequence(steps);
            default:
                throw new HfComponentException($"pre_tokenizer '{type}' is not supported");
        }
    }

    /// <summary>Splits where the pattern matches, keeping or merging the matches as the behaviour says.</summary>
    internal static void SplitOn(PreToken piece, List<(int Start, int Length)> matches, string behavior, bool invert,
        List<PreToken> output)
    {
        // Every unit is either in a match or between matches; invert swaps which of the two is the delimiter.
        var parts = new List<(int Start, int End, bool IsMatch)>();
        var position = 0;
        foreach (var (start, length) in matches)
        {
            if (start > position) parts.Add((position, start, invert));
            parts.Add((start, start + length, !invert));
            position = start + length;
        }
        if (position < piece.Length) parts.Add((position, piece.Length, invert));

        var pendingStart = -1; // MergedWithNext: a delimiter waiting for what follows it
        var lastEmitted = -1;
        var previousWasMatch = false;
        foreach (var (start, end, isMatch) in parts)
        {
            switch (behavior)
            {
                case "Isolated": Emit(start, end); break;
                case "Removed": if (!isMatch) Emit(start, end); break;
                case "MergedWithPrevious":
                    if (isMatch && lastEmitted >= 0)
                        output[lastEmitted] = output[lastEmitted]
                            with { Length = end - output[lastEmitted].Start + piece.Start };
                    else Emit(start, end);
                    break;
                case "MergedWithNext":
                    if (isMatch) { if (pendingStart < 0) pendingStart = start; }
                    else { Emit(pendingStart >= 0 ? pendingStart : start, end); pendingStart = -1; }
                    break;
                case "Contiguous":
                    if (isMatch && previousWasMatch && lastEmitted >= 0)
                        output[lastEmitted] = output[lastEmitted]
                            with { Length = end - output[lastEmitted].Start + piece.Start };
                    else Emit(start, end);
                    break;
            }
            previousWasMatch = isMatch;
        }
        if (pendingStart >= 0) Emit(pendingStart, piece.Length);

        void Emit(int start, int end)
        {
            if (end <= start) return;
            output.Add(new PreToken(piece.Source, piece.Start + start, end - start));
            lastEmitted = output.Count - 1;
        }
    }

    private sealed class Sequence(HfPreTokenizer[] steps) : HfPreTokenizer
    {
        public override bool MapsBytes => steps[^1].MapsBytes;

        public override void Split(PreToken piece, List<PreToken> output)
        {
            List<PreToken> current = [piece], next = [];
            foreach (var step in steps)
            {
                next.Clear();
                foreach (var part in current) step.Split(part, next);
                (current, next) = (next, current);
            }
            output.AddRange(current);
        }
    }

    private sealed class SplitByPattern(HfPattern pattern, string behavior, bool invert) : HfPreTokenizer
    {
        public override void Split(PreToken piece, List<PreToken> output)
            => SplitOn(piece, pattern.Matches(piece.Span), behavior, invert, output);
    }

    /// <summary>GPT-2's ByteLevel: optional leading space, optional GPT-2 regex split; bytes are mapped by the
    /// model.</summary>
    private sealed class ByteLevel(bool addPrefixSpace, bool useRegex) : HfPreTokenizer
    {
        public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
        private static readonly HfPattern Gpt2 = HfPattern.FromRegex(Gpt2Pattern);

        public override bool MapsBytes => true;

        public override void Split(PreToken piece, List<PreToken> output)
        {
            if (addPrefixSpace && !piece.Span.StartsWith(' ')) piece = WithPrefix(piece, " ");
            if (!useRegex) { output.Add(piece); return; }
            SplitOn(piece, Gpt2.Matches(piece.Span), "Isolated", invert: false, output);
        }
    }

    /// <summary>SentencePiece's view of spaces: ' ' becomes '▁', a '▁' may be prepended, and pieces may start at each
    /// '▁'.</summary>
    private sealed class Metaspace(string replacement, string prependScheme, bool split) : HfPreTokenizer
    {
        public override void Split(PreToken piece, List<PreToken> output)
        {
            var builder = new AlignedText.Builder(piece.Length + 1);
            // Spaces become the replacement first, so a leading ' ' counts as already prepended.
            var prepend = (prependScheme == "always"
                || (prependScheme == "first" && piece.Source.OriginalStart(piece.Start) == 0))
                && !piece.Span.StartsWith(replacement) && !piece.Span.StartsWith(' ');
            if (prepend && piece.Length > 0) builder.Append(replacement, piece.Source.OriginalStart(piece.Start),
                piece.Source.OriginalEnd(piece.Start));
            for (var i = piece.Start; i < piece.Start + piece.Length; i++)
            {
                if (piece.Source.Text[i] == ' ')
                    builder.Append(replacement, piece.Source.OriginalStart(i), piece.Source.OriginalEnd(i));
                else builder.Copy(piece.Source, i, i + 1);
            }
            var text = builder.Build();
            var whole = new PreToken(text, 0, text.Text.Length);
            if (!split) { if (whole.Length > 0) output.Add(whole); return; }
            var matches = new List<(int, int)>();
            for (var at = whole.Span.IndexOf(replacement, StringComparison.Ordinal); at >= 0;)
            {
                matches.Add((at, replacement.Length));
                var next = whole.Span[(at + replacement.Length)..].IndexOf(replacement, StringComparison.Ordinal);
                at = next < 0 ? -1 : at + replacement.Length + next;
            }
            SplitOn(whole, matches, "MergedWithNext", invert: false, output);
        }
    }

    private static PreToken WithPrefix(PreToken piece, string prefix)
    {
        var builder = new AlignedText.Builder(piece.Length + prefix.Length);
        builder.Append(prefix, piece.Source.OriginalStart(piece.Start), piece.Source.OriginalEnd(piece.Start));
        builder.Copy(piece.Source, piece.Start, piece.Start + piece.Length);
        var text = builder.Build();
        return new PreToken(text, 0, text.Text.Length);
    }
}
