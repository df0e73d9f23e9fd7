using System.Collections.Concurrent;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace FineTune.Tokenizers.Tests;

/// <summary>
/// Our ids against Hugging Face's Rust tokenizers (through Tokenizers.DotNet) on strings where implementations
/// usually drift: whitespace runs, CJK, ZWJ emoji, digits, special tokens typed by the user, NFC, mixed scripts.
/// </summary>
public class HfTokenizerGoldenTests
{
    public static readonly string[] TokenizerNames = ["qwen3", "gpt2", "llama3", "llama3-plain", "llama2", "mistral3"];

    public static readonly string[] HardStrings =
    [
        "",
        "Hello, world! It's 2025 and I'm fine-tuning LLMs.",
        "    four leading spaces",
        "trailing spaces   ",
        " single leading space",
        "runs:  two   three    four\t\ttabs\t \t mixed\n\n\nnewlines \n \n\r\nwindows\r\n",
        "嬛嬛，你怎么了？朕替你打抱不平！",
        "family 👩‍👩‍👧 and 👩‍👩‍👧‍👦 flag 🏳️‍🌈 thumbs 👍🏽",
        "digits 1234567890 3.14159 1e-5 0x1F 0000000",
        "user text with <|im_end|> and <|im_start|>assistant\n inside, <|endoftext|> too",
        "llama: <s>[INST] hi [/INST]</s> and <|begin_of_text|><|eot_id|>",
        "cafe\u0301 and café, nai\u0308ve, A\u030A vs Å",
        "mixed: English, русский, ελληνικά, العربية, हिन्दी, 日本語のテキスト, 한국어",
        "don't YOU'LL we'VE I'M 'S it's",
        " zebra zebra zebras",
        "code: if (x != y) { return a->b; } // ☃ ﬁ ß ǅ",
        "math 𝐀𝐁𝐂 and 𠀀𠀁 astral letters",
        "astral inside words: x𝐀y word𝐀bc next 中𠀀文 好𠀁 ab𝐀𝐁cd",
        "astral digits: 1𝟏2 𝟏𝟐𝟑𝟒. x 𝟏𝟐𝟑4",
        "a",
        " ",
        "\n",
    ];

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in TokenizerNames)
            for (var i = 0; i < HardStrings.Length; i++) data.Add(name, i);
        return data;
    }

    // Lazy: GetOrAdd may run its factory on several threads at once, and two writers of one file collide.
    private static readonly ConcurrentDictionary<string, Lazy<string>> Paths = new();
    private static readonly ConcurrentDictionary<string, HfTokenizer> Ours = new();
    private static readonly ConcurrentDictionary<string, RustTokenizer> Oracles = new();

    internal static string PathOf(string name) => Paths.GetOrAdd(name, n => new Lazy<string>(() => WritePath(n))).Value;

    private static string WritePath(string n) => n switch
    {
        "qwen3" => Path.Combine(AppContext.BaseDirectory, "assets", "qwen3", "tokenizer.json"),
        "gpt2" => Gpt2Path(),
        "llama3" => HfFixtures.WriteTemp(HfFixtures.Llama3Style(ignoreMerges: true), n),
        "llama3-plain" => HfFixtures.WriteTemp(HfFixtures.Llama3Style(ignoreMerges: false), n),
        "llama2" => HfFixtures.WriteTemp(HfFixtures.Llama2Style(), n),
        "mistral3" => HfFixtures.WriteTemp(HfFixtures.MistralV3Style(), n),
        _ => throw new ArgumentException(n),
    };

    private static string Gpt2Path()
    {
        var dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "ft-hf-gpt2-" + Environment.ProcessId)).FullName;
        var path = Path.Combine(dir, "tokenizer.json");
        // The added tokens of FineTune's built-in gpt2 tokenizer: <|endoftext|> and the ChatML markers.
        using (var file = File.Create(path))
            TokenizerJson.WriteGpt2([new(50256, "<|endoftext|>", true), new(50257, "<|im_start|>", true), new(50258, "<|im_end|>", true)], file);
        return path;
    }

    internal static HfTokenizer Our(string name) => Ours.GetOrAdd(name, n => HfTokenizer.Load(PathOf(n)));
    internal static RustTokenizer Oracle(string name) => Oracles.GetOrAdd(name, n => new RustTokenizer(PathOf(n)));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Ids_match_the_rust_library(string tokenizer, int stringIndex)
    {
        var text = HardStrings[stringIndex];
        var expected = Oracle(tokenizer).Encode(text).Select(id => (int)id).ToArray();
        var ours = Our(tokenizer).Encode(text, addSpecialTokens: true);
        Assert.Equal(expected, ours.Ids);
        Assert.Equal(ours.Ids.Length, ours.Offsets.Length);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decoding_matches_the_rust_library(string tokenizer, int stringIndex)
    {
        var ids = Oracle(tokenizer).Encode(HardStrings[stringIndex]);
        Assert.Equal(Oracle(tokenizer).Decode(ids), Our(tokenizer).Decode([.. ids.Select(id => (int)id)]));
    }
}
