using System.Text;
using System.Text.Json;

namespace FineTune.Tokenizers;

/// <summary>Hugging Face decoders: each rewrites the list of token strings; the result is their
/// concatenation.</summary>
internal abstract class HfDecoder
{
    public abstract List<string> Decode(List<string> tokens);

    public static HfDecoder? Read(JsonElement json)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return null;
        var type = json.Str("type");
        return type switch
        {
            "ByteLevel" => new ByteLevel(),
            "ByteFallback" => new ByteFallback(),
            "Fuse" => new Fuse(),
            "Replace"
                => new Replace(HfPattern.Read(json.GetProperty("pattern")), json.GetProperty("content").GetString()!),
            "Strip" => new Strip(json.GetProperty("content").GetString()![0], json.GetProperty("start").GetInt32(),
                json.GetProperty("stop").GetInt32()),
            "Metaspace" => new Metaspace(json.Str("replacement") ?? "▁",
                (json.Str("prepend_scheme")
                    ?? (json.Flag("add_prefix_space", fallback: true) ? "always" : "never")) != "never"),
            "Sequence"
                => new Sequence([.. json.GetProperty("decoders").EnumerateArray().Select(Read).OfType<HfDecoder>()]),
            _ => throw new HfComponentException($"decoder '{type}' is not supported"),
        };
    }

    private sealed class Sequence(HfDecoder[] steps) : HfDecoder
    {
        public override List<string> Decode(List<string> tokens)
        {
            foreach (var step in steps) tokens = step.Decode(tokens);
            return tokens;
        }
    }

    /// <summary>GPT-2 characters back to bytes; a token with a character outside the map (an added token) keeps its
    /// UTF-8.</summary>
    private sealed class ByteLevel : HfDecoder
    {
        private static readonly int[] ByteOfChar = BuildReverse();

        private static int[] BuildReverse()
        {
            var reverse = Enumerable.Repeat(-1, 512).ToArray();
            for (var b = 0; b < 256; b++) reverse[ByteLevelAlphabet.CharOfByte[b]] = b;
            return reverse;
        }

        public override List<string> Decode(List<string> tokens)
        {
            var bytes = new List<byte>();
            foreach (var token in tokens)
            {
                var mapped = token.All(c => c < ByteOfChar.Length && ByteOfChar[c] >= 0);
                if (mapped) foreach (var c in token) bytes.Add((byte)ByteOfChar[c]);
                else bytes.AddRange(Encoding.UTF8.GetBytes(token));
            }
            return [Encoding.UTF8.GetString([.. bytes])];
        }
    }

    /// <summary>Runs of &lt;0xAB&gt; tokens become their UTF-8 text, or one U+FFFD per byte when that is not valid
    /// UTF-8.</summary>
    private sealed class ByteFallback : HfDecoder
    {
        private static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

        public override List<string> Decode(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            var pending = new List<byte>();
            foreach (var token in tokens)
            {
                if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                    && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null,
                        out var value))
                {
                    pending.Add(value);
                    continue;
                }
                Flush();
                result.Add(token);
            }
            Flush();
            return result;

            void Flush()
            {
                if (pending.Count == 0) return;
                try { result.Add(Strict.GetString([.. pending])); }
                catch (DecoderFallbackException) { for (var i = 0; i < pending.Count; i++) result.Add("\uFFFD"); }
                pending.Clear();
            }
        }
    }

    private sealed class Fuse : HfDecoder
    {
        public override List<string> Decode(List<string> tokens) => [string.Concat(tokens)];
    }

    private sealed class Replace(HfPattern pattern, string content) : HfDecoder
    {
        public override List<string> Decode(List<string> tokens)
            => [.. tokens.Select(t => pattern.ReplaceAll(t, content))];
    }

    /// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing <c>content</c> characters from each
    /// token.</summary>
    private sealed class Strip(char content, int start, int stop) : HfDecoder
    {
        public override List<string> Decode(List<string> tokens) => [.. tokens.Select(StripOne)];

        private string StripOne(string token)
        {
            var from = 0;
            while (from < start && from < token.Length && token[from] == content) from++;
            var to = token.Length;
            while (token.Length - to < stop && to > from && token[to - 1] == content) to--;
            return token[from..to];
        }
    }

    /// <summary>'▁' back to ' '; the space that the pre-tokenizer prepended is dropped from the first token.</summary>
    private sealed class Metaspace(string replacement, bool dropsFirstSpace) : HfDecoder
    {
        public override List<string> Decode(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            for (var i = 0; i < tokens.Count; i++)
            {
                var token = tokens[i].Replace(replacement, " ", StringComparison.Ordinal);
                if (i == 0 && dropsFirstSpace && token.StartsWith(' ')) token = token[1..];
                result.Add(token);
            }
            return result;
        }
    }
}
