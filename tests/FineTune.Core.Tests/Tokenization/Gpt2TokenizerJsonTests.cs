using System.Text.Json;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.Tokenization;

public class Gpt2TokenizerJsonTests
{
    private static readonly Lazy<string> WrittenFolder = new(() =>
    {
        var dir = Path.Combine(Path.GetTempPath(), "ft-gpt2-tokenizer-" + Guid.NewGuid());
        TokenizerAssets.Gpt2.WriteFiles(dir, modelMaxLength: 384);
        return dir;
    });

    public static TheoryData<string> HardStrings() =>
    [
        "Hello, world! It's 2025 and I'm fine-tuning LLMs.",
        "嬛嬛，你怎么了？朕替你打抱不平！",
        "family: 👩‍👩‍👧‍👦 flag: 🏳️‍🌈 skin: 👍🏽",
        "spaces:     four, tabs:\t\t\ttrio, newlines:\n\n\n\nend   \n \n",
        "digits 1234567890 3.14159 1e-5 0x1F",
        "user text with <|im_end|> and <|im_start|>assistant\n inside, and <|endoftext|>",
        "don't you'll we've I'M 'S mixed CASE contractions",
        "code: if (x != y) { return a->b; } // ☃ ﬁ ß ǅ",
        "   leading and trailing   ",
    ];

    [Theory]
    [MemberData(nameof(HardStrings))]
    public void Written_tokenizer_json_reproduces_the_gpt2_ids(string text)
    {
        var reloaded = ChatTokenizer.LoadFolder(WrittenFolder.Value);
        Assert.Equal(TokenizerAssets.Gpt2.Encode(text), reloaded.Encode(text));
        Assert.Equal(text, reloaded.Decode(reloaded.Encode(text), skipSpecialTokens: false));
    }

    [Fact]
    public void Written_tokenizer_json_has_gpt2_vocab_merges_and_chatml_tokens()
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(WrittenFolder.Value, "tokenizer.json")));
        var model = json.RootElement.GetProperty("model");
        // GPT-2's published vocab.json has 50,257 entries and merges.txt 50,000 merges, the first being "Ġ t".
        Assert.Equal(50257, model.GetProperty("vocab").EnumerateObject().Count());
        Assert.Equal(50000, model.GetProperty("merges").GetArrayLength());
        Assert.Equal("Ġ t", model.GetProperty("merges")[0].GetString());
        Assert.Equal(15496, model.GetProperty("vocab").GetProperty("Hello").GetInt32());
        Assert.Equal(198, model.GetProperty("vocab").GetProperty("Ċ").GetInt32());
        var added = json.RootElement.GetProperty("added_tokens").EnumerateArray()
            .Select(t => (t.GetProperty("id").GetInt32(), t.GetProperty("content").GetString(), t.GetProperty("special").GetBoolean())).ToList();
        Assert.Equal([(50256, "<|endoftext|>", true), (50257, "<|im_start|>", true), (50258, "<|im_end|>", true)], added);
    }

    [Fact]
    public void Tokenizer_config_carries_chatml_template_and_special_tokens()
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(WrittenFolder.Value, "tokenizer_config.json")));
        var root = config.RootElement;
        Assert.Equal(ChatML.Jinja, root.GetProperty("chat_template").GetString());
        Assert.Contains("<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'", ChatML.Jinja);
        Assert.Equal("<|im_end|>", root.GetProperty("eos_token").GetString());
        Assert.Equal("<|endoftext|>", root.GetProperty("pad_token").GetString());
        Assert.Equal(384, root.GetProperty("model_max_length").GetInt32());
        using var map = JsonDocument.Parse(File.ReadAllText(Path.Combine(WrittenFolder.Value, "special_tokens_map.json")));
        Assert.Equal("<|im_end|>", map.RootElement.GetProperty("eos_token").GetString());
    }

    [Fact]
    public void Folder_tokenizer_is_copied_unchanged_with_the_template_that_trained()
    {
        var dir = Path.Combine(Path.GetTempPath(), "ft-qwen3-out-" + Guid.NewGuid());
        try
        {
            TokenizerAssets.Qwen3ChatML.WriteFiles(dir, modelMaxLength: 384);
            Assert.Equal(File.ReadAllBytes(Path.Combine(TokenizerAssets.Qwen3Folder, "tokenizer.json")), File.ReadAllBytes(Path.Combine(dir, "tokenizer.json")));
            using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer_config.json")));
            Assert.Equal(ChatML.Jinja, config.RootElement.GetProperty("chat_template").GetString());
            Assert.Equal(131072, config.RootElement.GetProperty("model_max_length").GetInt32()); // Qwen3's own value is kept
            Assert.Equal("Qwen2Tokenizer", config.RootElement.GetProperty("tokenizer_class").GetString());
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
