using System.Text;
using System.Text.Json;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Cli.Tests;

/// <summary><c>score</c> and <c>generate</c> on a tiny Qwen2-style folder with a byte-level tokenizer written here.</summary>
public sealed class ScoreAndGenerateTests : IDisposable
{
    private const int EndOfText = 256, ImStart = 257, ImEnd = 258;
    private readonly CliHarness _cli = new();
    private readonly string _model;

    public ScoreAndGenerateTests()
    {
        _model = Path.Combine(_cli.Folder, "model");
        var config = new LlamaConfig
        {
            ModelType = "qwen2", AttentionBias = true, TieWordEmbeddings = true, VocabSize = 259, HiddenSize = 16, IntermediateSize = 32,
            NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, EosTokenId = ImEnd,
        };
        using (var model = new LlamaForCausalLM(config))
        {
            model.InitializeWeights(11);
            // A wider spread than the default init, so greedy decoding picks varied tokens and a wrong score shows.
            using (no_grad())
                foreach (var (name, p) in model.named_parameters())
                    if (!name.EndsWith("norm.weight")) p.add_(randn(p.shape, generator: new Generator(5)) * 0.3);
            ModelFolder.Save(model, _model);
        }
        WriteByteTokenizer(_model);
    }

    public void Dispose() => _cli.Dispose();

    // GPT-2's byte-to-character table: printable bytes stand for themselves, the rest move to U+0100 onwards.
    private static char CharOfByte(int b, ref int next) => b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 ? (char)b : (char)(256 + next++);

    internal static void WriteByteTokenizer(string folder)
    {
        var next = 0;
        var vocab = new StringBuilder();
        for (var b = 0; b < 256; b++) vocab.Append(b == 0 ? "" : ",").Append(JsonSerializer.Serialize(CharOfByte(b, ref next).ToString())).Append(':').Append(b);
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"),
            """{"added_tokens":[{"id":256,"content":"<|endoftext|>","special":true},{"id":257,"content":"<|im_start|>","special":true},{"id":258,"content":"<|im_end|>","special":true}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},"""
            + "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|endoftext|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<|endoftext|>\":{\"id\":\"<|endoftext|>\",\"ids\":[256],\"tokens\":[\"<|endoftext|>\"]}}},"
            + "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},\"model\":{\"type\":\"BPE\",\"vocab\":{"
            + vocab + """},"merges":[]}}""");
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"bos_token":"<|endoftext|>","eos_token":"<|im_end|>","pad_token":"<|endoftext|>"}""");
    }

    /// <summary>log p(ids[t] | ids[..t]) from the model's logits, with the softmax done here in double.</summary>
    private double[] ExpectedLogProbabilities(int[] ids)
    {
        using var model = ModelFolder.Load(_model);
        using var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]);
        using var logits = model.Logits(model.Hidden(input));
        var result = new double[ids.Length - 1];
        for (var t = 0; t < result.Length; t++)
        {
            var row = logits[0, t].data<float>().Select(v => (double)v).ToArray();
            var max = row.Max();
            var logSumExp = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
            result[t] = row[ids[t + 1]] - logSumExp;
        }
        return result;
    }

    [Fact]
    public async Task Score_prints_each_next_token_log_probability_and_the_mean_nll()
    {
        var result = await _cli.Run("score", _model, "--text", "hello", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var json = JsonDocument.Parse(result.Out).RootElement;
        int[] ids = [104, 101, 108, 108, 111];
        Assert.Equal(ids, json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        var tokens = json.GetProperty("tokens").EnumerateArray().ToList();
        Assert.Equal(JsonValueKind.Null, tokens[0].GetProperty("logprob").ValueKind);
        Assert.Equal("e", tokens[1].GetProperty("token").GetString());
        var expected = ExpectedLogProbabilities(ids);
        for (var t = 1; t < ids.Length; t++) Assert.Equal(expected[t - 1], tokens[t].GetProperty("logprob").GetDouble(), 4);
        Assert.Equal(-expected.Average(), json.GetProperty("mean_nll").GetDouble(), 4);
        Assert.Equal(4, json.GetProperty("scored_tokens").GetInt32());
        Assert.True(json.GetProperty("mean_nll").GetDouble() > 0.5); // a random model is far from certain

        // The same ids given directly score the same; --add-special-tokens adds what the post-processor adds (BOS here).
        var byIds = await _cli.Run("score", _model, "--ids", "104, 101,108,108,111", "--json");
        Assert.Equal(json.GetProperty("mean_nll").GetDouble(), JsonDocument.Parse(byIds.Out).RootElement.GetProperty("mean_nll").GetDouble());
        var withBos = await _cli.Run("score", _model, "--text", "hello", "--add-special-tokens", "--json");
        Assert.Equal([EndOfText, .. ids], JsonDocument.Parse(withBos.Out).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));

        var file = _cli.Write("text.txt", "hello");
        var plain = await _cli.Run("score", _model, "--file", file);
        Assert.True(plain.ExitCode == 0, plain.Error);
        Assert.Contains($"mean NLL {-expected.Average():F4} nats over 4 predicted tokens", plain.Out);
        Assert.Contains("\"e\"", plain.Out);
    }

    [Fact]
    public async Task Generate_continues_the_raw_prompt_greedily_with_ids_in_the_json()
    {
        var result = await _cli.Run("generate", _model, "--prompt", "hi", "--max-new-tokens", "6", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var json = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal([104, 105], json.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()));
        var generated = json.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToList();

        using (var model = ModelFolder.Load(_model))
        {
            var expected = TextGenerator.GenerateIds(model, [104, 105], new GenerationOptions(MaxNewTokens: 6, StopTokenIds: [ImEnd]));
            Assert.Equal(expected, generated);
        }
        var finish = json.GetProperty("finish_reason").GetString();
        Assert.Equal(generated[^1] == ImEnd ? "stop" : "length", finish);
        var text = json.GetProperty("text").GetString()!;
        var printable = generated.Where(id => id < 256).Select(id => (byte)id).ToArray();
        Assert.Equal(Encoding.UTF8.GetString(printable), text);

        var plain = await _cli.Run("generate", _model, "--ids", "104,105", "--max-new-tokens", "6");
        Assert.True(plain.ExitCode == 0, plain.Error);
        Assert.Equal(text + "\n", plain.Out.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Bad_arguments_and_folders_exit_2_with_a_clear_message()
    {
        var both = await _cli.Run("score", _model, "--text", "a", "--ids", "1,2");
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("error FT0620: give only one of --text, --file and --ids (got --text and --ids)", both.Error);

        var none = await _cli.Run("score", _model);
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("FT0620", none.Error);

        var outside = await _cli.Run("score", _model, "--ids", "1,999");
        Assert.Equal(2, outside.ExitCode);
        Assert.Contains("token id 999 is outside the model's vocabulary (0..258)", outside.Error);

        var tooShort = await _cli.Run("score", _model, "--text", "a");
        Assert.Equal(2, tooShort.ExitCode);
        Assert.Contains("at least two tokens", tooShort.Error);

        var missing = await _cli.Run("generate", "no-such-model", "--prompt", "x");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("FT0621", missing.Error);

        var noPrompt = await _cli.Run("generate", _model);
        Assert.Equal(2, noPrompt.ExitCode);
        Assert.Contains("FT0620", noPrompt.Error);

        // Without tokenizer files: text cannot be encoded, ids still work.
        File.Delete(Path.Combine(_model, "tokenizer.json"));
        var noTokenizer = await _cli.Run("generate", _model, "--prompt", "x");
        Assert.Equal(2, noTokenizer.ExitCode);
        Assert.Contains("FT0622", noTokenizer.Error);
        var idsOnly = await _cli.Run("score", _model, "--ids", "104,105,33", "--json");
        Assert.True(idsOnly.ExitCode == 0, idsOnly.Error);

        // A corrupt weights file is the user's input too: exit 2, not "stage failed".
        File.WriteAllBytes(Path.Combine(_model, "model.safetensors"), [1, 2, 3]);
        var corrupt = await _cli.Run("score", _model, "--ids", "1,2");
        Assert.Equal(2, corrupt.ExitCode);
        Assert.Contains("FT0510", corrupt.Error);

        File.Delete(Path.Combine(_model, "model.safetensors"));
        File.WriteAllBytes(Path.Combine(_model, "pytorch_model.bin"), [0x80, 0x02]);
        var pickle = await _cli.Run("generate", _model, "--ids", "1,2");
        Assert.Equal(2, pickle.ExitCode);
        Assert.Contains("error FT0525", pickle.Error);
        Assert.Contains("execute arbitrary code", pickle.Error);
    }
}
