using System.Text;
using System.Text.Json.Nodes;

namespace FineTune.Tokenizers.Tests;

/// <summary>
/// Small tokenizer.json files in the layouts of real model families, with merges learned by a tiny BPE trainer on
/// a few sentences (so merges are realistic) and characters left out on purpose (so byte fallback fires).
/// </summary>
internal static class HfFixtures
{
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const string Corpus =
        "The quick brown fox jumps over the lazy dog. It's 2025, and we're fine-tuning models; they'll learn.\n" +
        "Hello world! Hello there, hello again.    Indented code:\n\tif (x != y) { return a->b; }\n\n" +
        "Numbers 1234567890 and 3.14159 and 42. Café, naïve, résumé. 你好，世界！你好吗？";

    /// <summary>A word the corpus never builds: with ignore_merges it is one id, without it is several.</summary>
    public const string UnmergeableWord = "zebra";

    public static string Llama3Style(bool ignoreMerges)
    {
        var words = PreTokenize(Corpus, Llama3Pattern).Select(w => Encoding.UTF8.GetBytes(w).Select(b => ByteLevelAlphabet.CharOfByte[b].ToString()).ToList());
        var merges = Train(words, 300);
        var vocab = new JsonObject();
        for (var b = 0; b < 256; b++) vocab[ByteLevelAlphabet.CharOfByte[b].ToString()] = b;
        foreach (var (left, right) in merges) vocab.TryAdd(left + right, vocab.Count);
        vocab.TryAdd("Ġ" + UnmergeableWord, vocab.Count);
        vocab.TryAdd(UnmergeableWord, vocab.Count);
        var first = vocab.Count;
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false };
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(
                Added(first, "<|begin_of_text|>", special: true), Added(first + 1, "<|end_of_text|>", special: true),
                Added(first + 2, "<|eot_id|>", special: true), Added(first + 3, "<|start_header_id|>", special: true)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Llama3Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    byteLevel.DeepClone()),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                    Template("<|begin_of_text|>", first)),
            },
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = Model(vocab, merges, ignoreMerges: ignoreMerges, byteFallback: false, unk: null),
        };
        return json.ToJsonString();
    }

    /// <summary>Llama 2: Prepend("▁") + Replace(" ", "▁") normalizer, no pre-tokenizer, byte fallback, &lt;s&gt; template.</summary>
    public static string Llama2Style() => SentencePiece(metaspace: false);

    /// <summary>Mistral v0.3: Metaspace pre-tokenizer (prepend_scheme first, no split) and decoder, control tokens.</summary>
    public static string MistralV3Style() => SentencePiece(metaspace: true);

    private static string SentencePiece(bool metaspace)
    {
        // Leave CJK and emoji out of the vocabulary so they go through <0xAB> tokens.
        var normalized = "▁" + Corpus.Replace(' ', '▁');
        var words = SplitBefore(normalized, '▁').Select(w => w.Where(InVocabulary).Select(c => c.ToString()).ToList()).ToList();
        var merges = Train(words, 200);
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (var b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = vocab.Count;
        foreach (var c in normalized.Where(InVocabulary).Distinct().OrderBy(c => c)) vocab.TryAdd(c.ToString(), vocab.Count);
        foreach (var (left, right) in merges) vocab.TryAdd(left + right, vocab.Count);
        var added = new JsonArray(Added(0, "<unk>", special: true), Added(1, "<s>", special: true), Added(2, "</s>", special: true));
        if (metaspace)
        {
            var control = vocab.Count;
            vocab["[INST]"] = control;
            vocab["[/INST]"] = control + 1;
            added.Add(Added(control, "[INST]", special: true));
            added.Add(Added(control + 1, "[/INST]", special: true));
        }
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = metaspace ? null : new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = metaspace ? new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false } : null,
            ["post_processor"] = Template("<s>", 1),
            ["decoder"] = metaspace
                ? new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false }
                : new JsonObject
                {
                    ["type"] = "Sequence",
                    ["decoders"] = new JsonArray(
                        new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                        new JsonObject { ["type"] = "ByteFallback" },
                        new JsonObject { ["type"] = "Fuse" },
                        new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
                },
            ["model"] = Model(vocab, merges, ignoreMerges: false, byteFallback: true, unk: "<unk>"),
        };
        return json.ToJsonString();
    }

    private static bool InVocabulary(char c) => c < 0x3000 && c != '\n' && c != '\t';

    public static string WriteTemp(string json, string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "ft-hf-fixtures-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, name + ".json");
        File.WriteAllText(path, json);
        return path;
    }

    private static JsonObject Model(JsonObject vocab, List<(string Left, string Right)> merges, bool ignoreMerges, bool byteFallback, string? unk) => new()
    {
        ["type"] = "BPE",
        ["dropout"] = null,
        ["unk_token"] = unk,
        ["continuing_subword_prefix"] = null,
        ["end_of_word_suffix"] = null,
        ["fuse_unk"] = byteFallback,
        ["byte_fallback"] = byteFallback,
        ["ignore_merges"] = ignoreMerges,
        ["vocab"] = vocab,
        // Pairs in the newer layout for one family, "a b" strings for the other: both must load.
        ["merges"] = new JsonArray([.. merges.Select(m => byteFallback ? (JsonNode)new JsonArray(m.Left, m.Right) : JsonValue.Create(m.Left + " " + m.Right))]),
    };

    private static JsonObject Added(int id, string content, bool special) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = special,
    };

    private static JsonObject Template(string bos, int bosId) => new()
    {
        ["type"] = "TemplateProcessing",
        ["single"] = new JsonArray(
            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
        ["pair"] = new JsonArray(
            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 1 } },
            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
        ["special_tokens"] = new JsonObject { [bos] = new JsonObject { ["id"] = bos, ["ids"] = new JsonArray(bosId), ["tokens"] = new JsonArray(bos) } },
    };

    private static IEnumerable<string> PreTokenize(string text, string pattern) =>
        System.Text.RegularExpressions.Regex.Matches(text, pattern).Select(m => m.Value);

    private static IEnumerable<string> SplitBefore(string text, char marker)
    {
        var start = 0;
        for (var i = 1; i <= text.Length; i++)
            if (i == text.Length || text[i] == marker) { yield return text[start..i]; start = i; }
    }

    /// <summary>Textbook BPE training: repeatedly merge the most frequent adjacent pair (ties: ordinal order).</summary>
    private static List<(string Left, string Right)> Train(IEnumerable<List<string>> words, int count)
    {
        var corpus = words.Where(w => w.Count > 0).ToList();
        var merges = new List<(string, string)>();
        while (merges.Count < count)
        {
            var counts = new Dictionary<(string, string), int>();
            foreach (var word in corpus)
                for (var i = 0; i + 1 < word.Count; i++)
                    counts[(word[i], word[i + 1])] = counts.GetValueOrDefault((word[i], word[i + 1])) + 1;
            if (counts.Count == 0) break;
            var best = counts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key.Item1 + "\u0000" + kv.Key.Item2, StringComparer.Ordinal).First().Key;
            merges.Add(best);
            foreach (var word in corpus)
                for (var i = 0; i + 1 < word.Count; i++)
                    if (word[i] == best.Item1 && word[i + 1] == best.Item2) { word[i] += word[i + 1]; word.RemoveAt(i + 1); }
        }
        return merges;
    }
}
