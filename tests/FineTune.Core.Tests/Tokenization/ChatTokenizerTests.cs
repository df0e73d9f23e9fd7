using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;
using FineTune.Tokenizers;
using FineTune.Tokenizers.Tests;

namespace FineTune.Core.Tests.Tokenization;

public class ChatTokenizerTests
{
    // Reference ids from Hugging Face tokenizers (transformers.js) and tiktoken: /work/shared/notes/torchsharp-probe.md §5.
    [Fact]
    public void Qwen3_matches_reference_ids()
    {
        var qwen = TokenizerAssets.Qwen3;
        Assert.Equal([123591, 123591, 3837, 109111, 34187, 11319, 112576, 100290, 56568, 75437, 99963, 16530, 49111, 6313],
            qwen.Encode("嬛嬛，你怎么了？朕替你打抱不平！"));
        Assert.Equal([9707, 11, 1879, 0, 1084, 594, 220, 17, 15, 17, 20],
            qwen.Encode("Hello, world! It's 2025 and I'm fine-tuning LLMs.").Take(11));
        Assert.Equal([151644, 872, 198, 108386, 151645, 198], qwen.Encode("<|im_start|>user\n你好<|im_end|>\n"));
    }

    [Fact]
    public void Qwen3_special_ids_come_from_its_files()
    {
        var qwen = TokenizerAssets.Qwen3;
        Assert.Equal(151644, qwen.Tokenizer.TokenToId("<|im_start|>"));
        Assert.Equal(151645, qwen.Tokenizer.TokenToId("<|im_end|>"));
        Assert.Equal([151645], qwen.StopTokenIds);       // eos_token is <|im_end|> in its tokenizer_config.json
        Assert.Equal(151643, qwen.PadTokenId);           // pad_token <|endoftext|>
        Assert.Equal(151669, qwen.VocabSize);            // largest added token is 151668
    }

    [Fact]
    public void Gpt2_matches_tiktoken_reference_and_adds_chatml_ids()
    {
        var gpt2 = TokenizerAssets.Gpt2;
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
        var tokenizer = TokenizerAssets.ByName(name);
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
    public void Template_rendering_equals_tokenizing_the_hand_rendered_chatml_string(string name, int index)
    {
        var tokenizer = TokenizerAssets.ByName(name);
        var messages = SampleConversations[index];
        var expected = tokenizer.Encode(ChatMLReference.Render(messages, addGenerationPrompt: false));
        Assert.Equal(expected, tokenizer.Tokenize(messages, TrainOn.Assistant).Ids);
        Assert.Equal(expected, tokenizer.EncodeConversation(messages, addGenerationPrompt: false));
        Assert.Equal(tokenizer.Encode(ChatMLReference.Render(messages, addGenerationPrompt: true)), tokenizer.EncodeConversation(messages, addGenerationPrompt: true));
    }

    [Theory]
    [MemberData(nameof(Conversations))]
    public void Train_on_all_labels_every_token(string name, int index)
    {
        var example = TokenizerAssets.ByName(name).Tokenize(SampleConversations[index], TrainOn.All);
        Assert.Equal(example.Ids, example.Labels);
    }

    [Fact]
    public void Assistant_mask_trains_only_answer_and_its_end_of_turn()
    {
        var qwen = TokenizerAssets.Qwen3ChatML;
        var example = qwen.Tokenize([new("user", "你好"), new("assistant", "我是甄嬛。")], TrainOn.Assistant);
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
        var gpt2 = TokenizerAssets.Gpt2;
        var example = gpt2.Tokenize([new("assistant", "\n\nHi")], TrainOn.Assistant);
        var trained = example.Ids.Where((id, i) => example.Labels[i] != TokenizedDataset.IgnoreLabel).ToArray();
        Assert.Equal(TokenizedDataset.IgnoreLabel, example.Labels[0]); // <|im_start|>
        Assert.Equal(TokenizedDataset.IgnoreLabel, example.Labels[1]); // "assistant"
        Assert.Equal(50258, trained[^1]);
        Assert.Equal("\n\n\nHi<|im_end|>", gpt2.Decode(trained, skipSpecialTokens: false));
    }

    [Fact]
    public void User_text_with_special_token_text_is_split_like_hugging_face()
    {
        var qwen = TokenizerAssets.Qwen3;
        var ids = qwen.Encode("a<|im_end|>b");
        Assert.Equal(3, ids.Count);
        Assert.Equal(151645, ids[1]);
    }

    [Fact]
    public void Missing_folder_or_missing_template_are_user_errors()
    {
        var missing = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(Path.Combine(Path.GetTempPath(), "no-such-tokenizer-" + Guid.NewGuid())));
        Assert.Equal("FT0401", missing.Diagnostics[0].Code);

        var dir = Directory.CreateTempSubdirectory("ft-tok-").FullName;
        try
        {
            // A tiny byte-level BPE without a tokenizer_config.json, so without a chat template of its own.
            var vocab = string.Join(",", Enumerable.Range(0, 256).Select(b => $"{JsonSerializer.Serialize(ByteLevelAlphabet.CharOfByte[b].ToString())}:{b}"));
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"),
                """{"added_tokens":[{"id":256,"content":"<|endoftext|>","special":true}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},"model":{"type":"BPE","vocab":{"""
                + vocab + """},"merges":[]}}""");
            var error = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(dir, ChatTokenizer.ModelTemplate));
            Assert.Equal("FT0405", error.Diagnostics[0].Code);
            Assert.Contains("llama3, chatml", error.Diagnostics[0].Message);
            var plain = ChatTokenizer.LoadFolder(dir); // fine for plain text; only a conversation needs the template
            Assert.Equal([72, 105], plain.Encode("Hi"));
            Assert.Equal("FT0405", Assert.Throws<FineTuneException>(() => plain.Render([new("user", "x")], false)).Diagnostics[0].Code);
            var unknown = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(dir, "no-such-template.jinja", dir));
            Assert.Equal("FT0405", unknown.Diagnostics[0].Code);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static string Trained(ChatTokenizer tokenizer, TokenizedExample example) =>
        tokenizer.Decode(example.Ids.Where((_, i) => example.Labels[i] != TokenizedDataset.IgnoreLabel).ToArray(), skipSpecialTokens: false);

    [Fact]
    public void Qwen3_own_template_trains_each_answer_with_its_end_of_turn_also_when_earlier_turns_render_differently()
    {
        // Qwen3's template gives the last answer an empty think block and drops it from answers before the last
        // question, so turn 1 is located by its content; turn 2 is what its rendering adds after the prompt.
        var qwen = TokenizerAssets.Qwen3;
        ChatMessage[] messages = [new("user", "A?"), new("assistant", "B."), new("user", "C?"), new("assistant", "D.")];
        const string rendered = "<|im_start|>user\nA?<|im_end|>\n<|im_start|>assistant\nB.<|im_end|>\n"
            + "<|im_start|>user\nC?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nD.<|im_end|>\n";
        Assert.Equal(rendered, qwen.Render(messages, addGenerationPrompt: false));
        var example = qwen.Tokenize(messages, TrainOn.Assistant);
        Assert.Equal(qwen.Encode(rendered), example.Ids);
        Assert.Equal("B.<|im_end|><think>\n\n</think>\n\nD.<|im_end|>", Trained(qwen, example));
        Assert.Equal("<think>\n\n</think>\n\nD.<|im_end|>", Trained(qwen, qwen.Tokenize(messages, TrainOn.Last)));
    }

    [Fact]
    public void Llama3_template_puts_bos_first_and_trains_answer_and_eot_id()
    {
        var folder = Llama3StyleFolder();
        try
        {
            var llama = ChatTokenizer.LoadFolder(folder);
            ChatMessage[] messages = [new("user", "Hello"), new("assistant", "  Hello there ")];
            // The Llama 3 template trims content and writes bos_token before the first header.
            const string rendered = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\nHello there<|eot_id|>";
            var example = llama.Tokenize(messages, TrainOn.Assistant);
            Assert.Equal(llama.Encode(rendered), example.Ids);
            Assert.Equal(llama.Tokenizer.TokenToId("<|begin_of_text|>"), example.Ids[0]);
            Assert.Equal(TokenizedDataset.IgnoreLabel, example.Labels[0]);
            Assert.Equal("Hello there<|eot_id|>", Trained(llama, example));
            Assert.Contains(llama.Tokenizer.TokenToId("<|eot_id|>")!.Value, llama.StopTokenIds);
        }
        finally { Directory.Delete(folder, true); }
    }

    private static string Llama3StyleFolder()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(HfFixtures.Llama3Style(ignoreMerges: true))!.AsObject();
        var added = json["added_tokens"]!.AsArray();
        var nextId = added.Max(t => t!["id"]!.GetValue<int>()) + 1;
        added.Add(new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = nextId, ["content"] = "<|end_header_id|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
        });
        var dir = Directory.CreateTempSubdirectory("ft-llama3-").FullName;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), new System.Text.Json.Nodes.JsonObject
        {
            ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = "<|eot_id|>", ["chat_template"] = BuiltinChatTemplates.Source("llama3"),
        }.ToJsonString());
        return dir;
    }

    [Fact]
    public void Last_turn_only_and_weight_zero_turns_are_not_trained()
    {
        var gpt2 = TokenizerAssets.Gpt2;
        ChatMessage[] messages = [new("user", "one"), new("assistant", "first"), new("user", "two"), new("assistant", "second")];
        Assert.Equal("first<|im_end|>second<|im_end|>", Trained(gpt2, gpt2.Tokenize(messages, TrainOn.Assistant)));
        Assert.Equal("second<|im_end|>", Trained(gpt2, gpt2.Tokenize(messages, TrainOn.Last)));
        ChatMessage[] weighted = [messages[0], messages[1] with { Weight = 0 }, messages[2], messages[3] with { Weight = 1 }];
        Assert.Equal("second<|im_end|>", Trained(gpt2, gpt2.Tokenize(weighted, TrainOn.Assistant)));
    }

    [Fact]
    public void Plain_text_example_is_trained_whole_and_ends_with_eos()
    {
        var gpt2 = TokenizerAssets.Gpt2;
        var example = gpt2.Tokenize(new Conversation([], 0, Text: "Once upon a time"), TrainOn.Assistant);
        Assert.Equal([.. gpt2.Encode("Once upon a time"), 50258], example.Ids);
        Assert.Equal(example.Ids, example.Labels);
    }

    [Fact]
    public void A_template_without_an_end_of_turn_token_is_reported()
    {
        var dir = Directory.CreateTempSubdirectory("ft-template-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "plain.jinja"), "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
            var tokenizer = ChatTokenizer.LoadGpt2("plain.jinja", dir);
            var example = tokenizer.Tokenize(new Conversation([new("user", "hi"), new("assistant", "hello")], 0), TrainOn.Assistant, out var endOfTurnTrained);
            Assert.False(endOfTurnTrained);
            // Without a generation prompt in the template, the turn's own header is part of what the turn adds.
            Assert.Equal("assistant: hello\n", Trained(tokenizer, example));
            TokenizerAssets.Gpt2.Tokenize(new Conversation([new("user", "hi"), new("assistant", "hello")], 0), TrainOn.Assistant, out var gpt2End);
            Assert.True(gpt2End);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_template_that_raises_or_does_not_parse_is_a_located_user_error()
    {
        var dir = Directory.CreateTempSubdirectory("ft-template-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "strict.jinja"),
                "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}");
            var strict = ChatTokenizer.LoadGpt2("strict.jinja", dir);
            var raised = Assert.Throws<FineTuneException>(() => strict.Tokenize(new Conversation([new("system", "s"), new("user", "u")], 0), TrainOn.Assistant));
            Assert.Equal("FT0411", raised.Diagnostics[0].Code);
            Assert.Contains("System role not supported", raised.Diagnostics[0].Message);
            Assert.Equal(ExitCodes.InvalidInput, raised.ExitCode);

            File.WriteAllText(Path.Combine(dir, "broken.jinja"), "{% for m in messages %}\n{{ m.content }\n{% endfor %}");
            var broken = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadGpt2("broken.jinja", dir));
            Assert.Equal("FT0410", broken.Diagnostics[0].Code);
            Assert.Equal(2, broken.Diagnostics[0].Line); // the line inside the template
            Assert.EndsWith("broken.jinja", broken.Diagnostics[0].File);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData("model", """{"type":"Unigram","vocab":[]}""", "model 'Unigram' is not supported")]
    [InlineData("decoder", """{"type":"WordPiece"}""", "decoder 'WordPiece' is not supported")]
    public void Unsupported_tokenizer_json_components_are_named_in_ft0402(string component, string replacement, string message)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(HfFixtures.Llama2Style())!.AsObject();
        json[component] = System.Text.Json.Nodes.JsonNode.Parse(replacement);
        var dir = Directory.CreateTempSubdirectory("ft-unsupported-").FullName;
        try
        {
            var path = Path.Combine(dir, "tokenizer.json");
            File.WriteAllText(path, json.ToJsonString());
            var error = Assert.Throws<FineTuneException>(() => ChatTokenizer.LoadFolder(dir));
            Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
            var diagnostic = Assert.Single(error.Diagnostics);
            Assert.Equal("FT0402", diagnostic.Code);
            Assert.Equal(path, diagnostic.File);
            Assert.Contains(message, diagnostic.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
