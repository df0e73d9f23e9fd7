using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace FineTune.Tokenizers;

/// <summary>The Hugging Face normalizers that the supported model families use, each keeping the alignment to the
/// input.</summary>
internal abstract class HfNormalizer
{
    public abstract AlignedText Apply(AlignedText text);

    /// <summary>Null for a null normalizer; throws <see cref="HfComponentException"/> for one we do not
    /// implement.</summary>
    public static HfNormalizer? Read(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return null; // absent or null: none
        var type = json.Str("type");
        return type switch
        {
            "NFC" => new UnicodeForm(NormalizationForm.FormC),
            "NFD" => new UnicodeForm(NormalizationForm.FormD),
            "NFKC" => new UnicodeForm(NormalizationForm.FormKC),
            "NFKD" => new UnicodeForm(NormalizationForm.FormKD),
            "Prepend" => new Prepend(json.GetProperty("prepend").GetString()!),
            "Replace"
                => new Replace(HfPattern.Read(json.GetProperty("pattern")), json.GetProperty("content").GetString()!),
            "Lowercase" => new Lowercase(),
            "Sequence"
                => new Sequence(
                    [.. json.GetProperty("normalizers").EnumerateArray().Select(Read).OfType<HfNormalizer>()]),
            _ => throw new HfComponentException($"normalizer '{type}' is not supported"),
        };
    }

    private sealed class Sequence(HfNormalizer[] steps) : HfNormalizer
    {
        public override AlignedText Apply(AlignedText text)
        {
            foreach (var step in steps) text = step.Apply(text);
            return text;
        }
    }

    /// <summary>
    /// Unicode normalization. Each base character with the combining marks after it is normalized as one group, and
    /// every unit of the result maps to the whole group, so "e" + U+0301 becomes "é" covering both input units.
    /// </summary>
    private sealed class UnicodeForm(NormalizationForm form) : HfNormalizer
    {
        public override AlignedText Apply(AlignedText text)
        {
            var s = text.Text;
            if (s.IsNormalized(form)) return text;
            var whole = s.Normalize(form);
            var builder = new AlignedText.Builder(whole.Length);
            var produced = 0;
            for (var start = 0; start < s.Length;)
            {
                var end = start + (char.IsHighSurrogate(s[start]) && start + 1 < s.Length ? 2 : 1);
                while (end < s.Length && IsCombining(s, end))
                    end += char.IsHighSurrogate(s[end]) && end + 1 < s.Length ? 2 : 1;
                var group = s[start..end].Normalize(form);
                builder.Append(group, text.OriginalStart(start), text.OriginalEnd(end - 1));
                produced += group.Length;
                start = end;
            }
            var grouped = builder.Build();
            // Composition across our groups (Hangul jamo, a few scripts) makes the texts differ: keep the exact text,
            // with coarser offsets that span the whole input.
            return grouped.Text == whole ? grouped : Coarse(whole, text);
        }

        private static bool IsCombining(string s, int index) =>
            CharUnicodeInfo.GetUnicodeCategory(s, index) is UnicodeCategory.NonSpacingMark
                or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;

        private static AlignedText Coarse(string whole, AlignedText text)
        {
            var builder = new AlignedText.Builder(whole.Length);
            builder.Append(whole, text.OriginalStart(0), text.OriginalEnd(text.Text.Length - 1));
            return builder.Build();
        }
    }

    private sealed class Lowercase : HfNormalizer
    {
        public override AlignedText Apply(AlignedText text)
        {
            var lower = text.Text.ToLowerInvariant();
            if (lower == text.Text) return text;
            var builder = new AlignedText.Builder(lower.Length);
            for (var i = 0; i < lower.Length; i++)
                builder.Append(lower.AsSpan(i, 1), text.OriginalStart(i), text.OriginalEnd(i));
            return builder.Build();
        }
    }

    /// <summary>Prepends to non-empty text (Llama 2's "▁"); the added units map to the first character.</summary>
    private sealed class Prepend(string prefix) : HfNormalizer
    {
        public override AlignedText Apply(AlignedText text)
        {
            if (text.Text.Length == 0) return text;
            var builder = new AlignedText.Builder(text.Text.Length + prefix.Length);
            builder.Append(prefix, text.OriginalStart(0), text.OriginalEnd(0));
            builder.Copy(text, 0, text.Text.Length);
            return builder.Build();
        }
    }

    /// <summary>Replaces every match; the replacement maps to the whole matched range.</summary>
    private sealed class Replace(HfPattern pattern, string content) : HfNormalizer
    {
        public override AlignedText Apply(AlignedText text)
        {
            var matches = pattern.Matches(text.Text);
            if (matches.Count == 0) return text;
            var builder = new AlignedText.Builder(text.Text.Length);
            var position = 0;
            foreach (var (start, length) in matches)
            {
                builder.Copy(text, position, start);
                var (originalStart, originalEnd) = text.Original(start, start + length);
                builder.Append(content, originalStart, originalEnd);
                position = start + length;
            }
            builder.Copy(text, position, text.Text.Length);
            return builder.Build();
        }
    }
}

/// <summary>A Hugging Face pattern: {"String": literal} or {"Regex": expression}.</summary>
internal sealed class HfPattern
{
    private readonly string? _literal;
    private readonly Regex? _regex;

    private HfPattern(string? literal, Regex? regex) { _literal = literal; _regex = regex; }

    public static HfPattern Read(JsonElement json)
    {
        if (json.TryGetProperty("String", out var literal)) return new(literal.GetString()!, null);
        if (json.TryGetProperty("Regex", out var regex)) return FromRegex(regex.GetString()!);
        throw new HfComponentException("a pattern that is neither String nor Regex is not supported");
    }

    public static HfPattern FromRegex(string pattern)
        => new(null, new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant));

    public List<(int Start, int Length)> Matches(ReadOnlySpan<char> text)
    {
        var found = new List<(int, int)>();
        if (_literal is not null)
        {
            if (_literal.Length == 0) return found;
            for (var at = text.IndexOf(_literal, StringComparison.Ordinal); at >= 0;)
            {
                found.Add((at, _literal.Length));
                var next = text[(at + _literal.Length)..].IndexOf(_literal, StringComparison.Ordinal);
                at = next < 0 ? -1 : at + _literal.Length + next;
            }
        }
        else if (text.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            foreach (var match in _regex!.EnumerateMatches(text))
                if (match.Length > 0) found.Add((match.Index, match.Length));
        }
        else
        {
            // .NET classes like \p{L} test UTF-16 units, so they never match a character outside the BMP (𝐀, 𝟏,
            // 𠀀); Hugging Face's regex engine tests code points. Match on a copy where each such character is one
            // BMP stand-in of the same Unicode category, then map the matches back.
            var (shadow, originalIndex) = AstralShadow(text);
            foreach (var match in _regex!.EnumerateMatches(shadow))
                if (match.Length > 0) found.Add((originalIndex[match.Index],
                    originalIndex[match.Index + match.Length] - originalIndex[match.Index]));
        }
        return found;
    }

    private static readonly char[] StandInOfCategory = BuildStandIns();

    private static char[] BuildStandIns()
    {
        var standIns = new char[32];
        for (var c = (int)char.MaxValue; c >= 0x80; c--)
            if (!char.IsSurrogate((char)c) && !char.IsWhiteSpace((char)c))
                standIns[(int)char.GetUnicodeCategory((char)c)] = (char)c;
        return standIns;
    }

    private static (string Shadow, int[] OriginalIndex) AstralShadow(ReadOnlySpan<char> text)
    {
        var shadow = new System.Text.StringBuilder(text.Length);
        var originalIndex = new List<int>(text.Length + 1);
        for (var i = 0; i < text.Length;)
        {
            originalIndex.Add(i);
            if (System.Text.Rune.DecodeFromUtf16(text[i..], out var rune,
                out var consumed) == System.Buffers.OperationStatus.Done && consumed == 2)
                shadow.Append(StandInOfCategory[(int)System.Text.Rune.GetUnicodeCategory(rune)]);
            else { shadow.Append(text[i]); consumed = 1; }
            i += consumed;
        }
        originalIndex.Add(text.Length);
        return (shadow.ToString(), [.. originalIndex]);
    }

    public string ReplaceAll(string text, string content) =>
        _literal is not null ? (_literal.Length == 0 ? text : text.Replace(_literal, content, StringComparison.Ordinal))
            : _regex!.Replace(text, content);
}

/// <summary>A tokenizer.json component we do not implement; the loader turns it into a TokenizerJsonException naming
/// the file.</summary>
internal sealed class HfComponentException(string message) : Exception(message);

internal static class HfJson
{
    public static string? Str(this JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value)
            && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    public static bool Flag(this JsonElement element, string name, bool fallback = false) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value)
            && value.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? value.ValueKind == JsonValueKind.True : fallback;

    public static JsonElement Prop(this JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) ? value : default;
}
