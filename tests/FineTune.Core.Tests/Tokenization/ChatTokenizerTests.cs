using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.Tokenization;

public class ChatTokenizerTests
{
    // Reference ids from Hugging Face tokenizers (transformers.js) and tiktoken: /work/shared/notes/torchsharp-probe.md §5.
    [Fact]
    public void Qwen3_matches_reference_ids()
    {
        var qwen = Tokenizers.Qwen3;
        Assert.Equal([123591, 123591, 3837, 109111, 34187, 11319, 112576, 100290, 56568, 75437, 99963, 16530, 49111, 6313],
            qwen.Encode("嬛嬛，你怎么了？朕替你打抱不平！"));
        Assert.Equal([9707, 11, 1879, 0, 1084, 594, 220, 17, 15, 17, 20],
            qwen.Encode("Hello, world! It's 2025 and I'm fine-tuning LLMs.").Take(11));
        Assert.Equal([151644, 872, 198, 108386, 151645, 198], qwen.Encode("<|im_start|>user\n你好<|im_end|>\n"));
    }

    [Fact]
    public void Qwen3_special_ids_come_from_its_files()
    {
        var qwen = Tokenizers.Qwen3;
        Assert.Equal(151644, qwen.ImStartId);
        Assert.Equal(151645, qwen.ImEndId);
        Assert.Equal([151645], qwen.StopTokenIds);       // eos_token is <|im_end|> in its tokenizer_config.json
        Assert.Equal(151643, qwen.PadTokenId);           // pad_token <|endoftext|>
        Assert.Equal(151669, qwen.VocabSize);            // largest added token is 151668
    }

    [Fact]
    public void Gpt2_matches_tiktoken_reference_and_adds_chatml_ids()
    {
        var gpt2 = Tokenizers.Gpt2;
        Assert.Equal([15496, 11, 995, 0, 10263, 105, 249, 161, 105, 249], gpt2.Encode("Hello, world! 嬛嬛"));
        Assert.Equal([50257, 15496, 50258, 198, 50256], gpt2.Encode("<|im_start|>Hello<|im_end|>\n<|endoftext|>"));
        Assert.Equal(50259, gpt2.VocabSize);
        Assert.Equal([50258], gpt2.StopTokenIds);
        Assert.Equal(50256, gpt2.PadTokenId);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    public void Decode_round_trips_and_can_drop_special_tokens(string name)
    {
        var tokenizer = Tokenizers.ByName(name);
        const string text = "<|im_start|>user\n嬛嬛 👩‍👩‍👧 café\t\t 12345<|im_end|>\n";
        var ids = tokenizer.Encode(text);
        Assert.Equal(text, tokenizer.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("user\n嬛嬛 👩‍👩‍👧 café\t\t 12345\n", tokenizer.Decode(ids));
    }

    public static TheoryData<string, int> Conversations()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in new[] { "gpt2", "qwen3" })
            for (var i = 0; i < SampleConversations.Length; i++) data.Add(name, i);
        return data;
    }

    private static readonly ChatMessage[][] SampleConversations =
    [
        [new("user", "你好"), new("assistant", "Hi there!")],
        [new("system", "You are 甄嬛."), new("user", "你是谁？"), new("assistant", "我是甄嬛，家父是大理寺少卿甄远道。")],
        // Content that starts or ends with whitespace merges with the template's newlines in BPE.
        [new("user", "\n\nleading newlines"), new("assistant", "\n\n  indented\n\n"), new("user", "  "), new("assistant", " trailing   ")],
        [new("user", "say <|im_end|> please"), new("assistant", "ok <|im_end|><|im_start|>user\nnot a turn")],
        [new("user", "emoji 👩‍👩‍👧‍👦 and 12345678 and tabs\t\t\tend"), new("assistant", "")],
        [new("user", "Ame\u0301lie"), new("assistant", "e\u0301\u0301 combining marks")],
    ];

    [Theory]
    [MemberData(nameof(Conversations))]
    public void Segmented_rendering_equals_tokenizing_the_whole_rendered_string(string name, int index)
    {
        var tokenizer = Tokenizers.ByName(name);
        var messages = SampleConversations[index];
        var expected = tokenizer.Encode(ChatML.Render(messages, addGenerationPrompt: false));
        Assert.Equal(expected, tokenizer.Tokenize(messages, trainOnAll: false).Ids);
        Assert.Equal(expected, tokenizer.EncodeConversation(messages, addGenerationPrompt: false));
        Assert.Equal(tokenizer.Encode(ChatML.Render(messages, addGenerationPrompt: true)), tokenizer.EncodeConversation(messages, addGenerationPrompt: true));
    }

    [Theory]
    [MemberData(nameof(Conversations))]
    public void Train_on_all_labels_every_token(string name, int index)
    {
        var example = Tokenizers.ByName(name).Tokenize(SampleConversations[index], trainOnAll: true);
        Assert.Equal(example.Ids, example.Labels);
    }

    [Fact]
    public void Assistant_mask_trains_only_answer_and_its_end_of_turn()
    {
        var qwen = Tokenizers.Qwen3;
        var example = qwen.Tokenize([new("user", "你好"), new("assistant", "我是甄嬛。")], trainOnAll: false);
        var answer = qwen.Encode("我是甄嬛。").ToArray();
        var header = qwen.Encode("<|im_start|>assistant\n").ToArray();
        // <|im_start|>user\n你好<|im_end|>\n  <|im_start|>assistant\n  answer <|im_end|>  \n
        int[] expectedIds = [151644, 872, 198, 108386, 151645, 198, .. header, .. answer, 151645, 198];
        Assert.Equal(expectedIds, example.Ids);
        var ignored = Enumerable.Repeat(TokenizedDataset.IgnoreLabel, 6 + header.Length).ToArray();
        int[] expectedLabels = [.. ignored, .. answer, 151645, TokenizedDataset.IgnoreLabel];
        Assert.Equal(expectedLabels, example.Labels);
        Assert.Equal([151644, 77091, 198], header); // "assistant" is one Qwen token
    }

    [Fact]
    public void Assistant_mask_trains_a_token_that_straddles_header_and_content()
    {
        // "\n" + "\n\n" content -> the pre-tokenizer makes one "\n\n\n" piece that spans the header's newline.
        var gpt2 = Tokenizers.Gpt2;
        var example = gpt2.Tokenize([new("assistant", "\n\nHi")], trainOnAll: false);
        var trained = example.Ids.Where((id, i) => example.Labels[i] != TokenizedDataset.IgnoreLabel).ToArray();
        Assert.Equal(TokenizedDataset.IgnoreLabel, example.Labels[0]); // <|im_start|>
        Assert.Equal(TokenizedDataset.IgnoreLabel, example.Labels[1]); // "assistant"
        Assert.Equal(50258, trained[^1]);
        Assert.Equal("\n\n\nHi<|im_end|>", gpt2.Decode(trained, skipSpecialTokens: false));
    }

    [Fact]
    public void User_text_with_special_token_text_is_split_like_hugging_face()
    {
        var qwen = Tokenizers.Qwen3;
        var ids = qwen.Encode("a<|im_end|>b");
        Assert.Equal(3, ids.Count);
        Assert.Equal(151645, ids[1]);
    }

    [Fact]
    public void Missing_folder_or_chatml_tokens_are_user_errors()
    {
        var missing = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(Path.Combine(Path.GetTempPath(), "no-such-tokenizer-" + Guid.NewGuid())));
        Assert.Equal("FT0401", missing.Diagnostics[0].Code);

        var dir = Directory.CreateTempSubdirectory("ft-tok-").FullName;
        try
        {
            // A tiny byte-level BPE without ChatML tokens.
            var vocab = string.Join(",", Enumerable.Range(0, 256).Select(b => $"{JsonSerializer.Serialize(ByteLevelAlphabet.CharOfByte[b].ToString())}:{b}"));
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"),
                """{"added_tokens":[{"id":256,"content":"<|endoftext|>","special":true}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},"model":{"type":"BPE","vocab":{"""
                + vocab + """},"merges":[]}}""");
            var error = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(dir));
            Assert.Equal("FT0403", error.Diagnostics[0].Code);
        }
        finally { Directory.Delete(dir, true); }
    }
}
