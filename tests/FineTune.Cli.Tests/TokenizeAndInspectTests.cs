using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;

namespace FineTune.Cli.Tests;

public sealed class TokenizeAndInspectTests : IDisposable
{
    private readonly CliHarness _cli = new();

    public void Dispose() => _cli.Dispose();

    // The byte tokenizer fixture: byte b is id b, <|endoftext|> 256 (BOS by its post-processor), <|im_start|> 257, <|im_end|> 258.
    private string ByteTokenizerWithChatML()
    {
        var folder = Path.Combine(_cli.Folder, "tok");
        Directory.CreateDirectory(folder);
        ScoreAndGenerateTests.WriteByteTokenizer(folder);
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), new JsonObject
        {
            ["bos_token"] = "<|endoftext|>", ["eos_token"] = "<|im_end|>", ["chat_template"] = ChatML.Jinja,
        }.ToJsonString());
        return folder;
    }

    private static int[] Bytes(string text) => [.. System.Text.Encoding.UTF8.GetBytes(text).Select(b => (int)b)];

    [Fact]
    public async Task Tokenize_encodes_text_and_renders_messages_as_transformers_does()
    {
        var tokenizer = ByteTokenizerWithChatML();
        var input = _cli.Write("input.jsonl", string.Join("\n",
            """{"text": "hi"}""",
            """{"text": "hi", "add_special_tokens": false}""",
            """{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true}""",
            ""));
        var result = await _cli.Run("tokenize", tokenizer, "--file", input, "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var lines = result.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(3, lines.Count);
        int[] Ids(JsonNode line) => [.. line["ids"]!.AsArray().Select(i => i!.GetValue<int>())];

        Assert.Equal([256, .. Bytes("hi")], Ids(lines[0]));   // tokenizer(text) adds what the post-processor adds
        Assert.Equal(Bytes("hi"), Ids(lines[1]));
        const string rendered = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
        Assert.Equal(rendered, lines[2]["text"]!.GetValue<string>());
        Assert.Equal([257, .. Bytes("user\nhi"), 258, .. Bytes("\n"), 257, .. Bytes("assistant\n")], Ids(lines[2]));
    }

    [Fact]
    public async Task Tokenize_names_the_line_of_a_bad_input()
    {
        var tokenizer = ByteTokenizerWithChatML();
        var input = _cli.Write("bad.jsonl", "{\"text\": \"ok\"}\n{\"prompt\": \"no\"}\n");
        var result = await _cli.Run("tokenize", tokenizer, "--file", input);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("bad.jsonl(2", result.Error);
        Assert.Contains("error FT0624", result.Error);
    }

    [Fact]
    public async Task Inspect_shows_every_token_and_marks_the_trained_ones()
    {
        _cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        _cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);

        var json = await _cli.Run("inspect", "pipelines/tiny.yaml", "--examples", "2", "--json");
        Assert.True(json.ExitCode == 0, json.Error);
        var examples = JsonNode.Parse(json.Out)!["examples"]!.AsArray();
        Assert.Equal(2, examples.Count);
        foreach (var example in examples)
        {
            var tokens = example!["tokens"]!.AsArray();
            Assert.Equal(example["length"]!.GetValue<int>(), tokens.Count);
            var trained = tokens.Where(t => t!["trained"]!.GetValue<bool>()).ToList();
            Assert.Equal(example["trained"]!.GetValue<int>(), trained.Count);
            // ChatML with the answer trained: the first token is <|im_start|> (not trained), the last trained is <|im_end|>.
            Assert.Equal("<|im_start|>", tokens[0]!["piece"]!.GetValue<string>());
            Assert.False(tokens[0]!["trained"]!.GetValue<bool>());
            Assert.Equal("<|im_end|>", trained[^1]!["piece"]!.GetValue<string>());
            var answer = string.Concat(trained.Select(t => t!["piece"]!.GetValue<string>()));
            Assert.Contains(answer, new[] { "我是甄嬛，家父是大理寺少卿甄远道。<|im_end|>", "皇上好，我是甄嬛。<|im_end|>", "臣妾知道了。<|im_end|>" });
        }

        var text = await _cli.Run("inspect", "pipelines/tiny.yaml", "--examples", "1");
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains("--- example 0:", text.Out);
        Assert.Contains("[[", text.Out); // redirected output marks trained tokens instead of colouring them
        Assert.Contains("<|im_end|>(", text.Out);
    }
}
