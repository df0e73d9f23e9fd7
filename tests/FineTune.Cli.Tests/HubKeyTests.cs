using System.Text.Json;
using FineTune.Core.Tests.Hub;
using FineTune.Core.Tokenization;
using FineTune.Torch.Models;

namespace FineTune.Cli.Tests;

/// <summary>
/// A pipeline whose tokenizer and model come from a (fake) Hub: the keys are the Hub's ETags, so <c>status</c> never
/// transfers weights and says a stage runs again exactly when the Hub publishes other content.
/// </summary>
public sealed class HubKeyTests : IDisposable
{
    private const string Pipeline = """
        name: hub
        stages:
          fetch: { path: data.json }
          format: { validation: 3 }
          tokenize: { tokenizer: acme/tiny-llama, chat_template: chatml, max_length: 64 }
          train:
            model: acme/tiny-llama
            epochs: 1
            batch_size: 4
            gradient_accumulation: 1
            learning_rate: 1e-2
          evaluate:
            prompts: ["你是谁？"]
            max_new_tokens: 4
        """;

    private readonly CliHarness _cli = new();
    private readonly FakeHub _hub = new();
    private readonly Dictionary<string, string?> _saved = [];

    public HubKeyTests()
    {
        foreach (var (name, value) in new[] { ("HF_HUB_CACHE", Path.Combine(_cli.Folder, "hub")),
            ("HF_ENDPOINT", _hub.Endpoint.ToString()), ("HF_HUB_OFFLINE", null), ("HF_TOKEN", null),
            ("FINETUNE_CACHE", Path.Combine(_cli.Folder, "cache")) })
        {
            _saved[name] = Environment.GetEnvironmentVariable(name);
            Environment.SetEnvironmentVariable(name, value);
        }
        var folder = Path.Combine(_cli.Folder, "published");
        var tokenizer = ChatTokenizer.LoadGpt2();
        tokenizer.WriteFiles(folder, modelMaxLength: 128);
        SaveModel(folder, tokenizer.VocabSize, seed: 1);
        _hub.Files.Clear();
        foreach (var file in Directory.GetFiles(folder))
            _hub.Files[Path.GetFileName(file)] = new FakeHub.HubFile(File.ReadAllBytes(file),
                Lfs: file.EndsWith(".safetensors", StringComparison.Ordinal));
        _hub.Files["README.md"] = new FakeHub.HubFile("# tiny"u8.ToArray(), Lfs: false);
    }

    private static void SaveModel(string folder, int vocabSize, int seed)
    {
        var config = new LlamaConfig
        {
            VocabSize = vocabSize, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2,
            NumKeyValueHeads = 1, MaxPositionEmbeddings = 128,
        };
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(seed);
        ModelFolder.Save(model, folder);
    }

    public void Dispose()
    {
        foreach (var (name, value) in _saved) Environment.SetEnvironmentVariable(name, value);
        _hub.Dispose();
        _cli.Dispose();
    }

    private bool WeightBytesRequested(int after) => _hub.Requests.Skip(after).Any(r =>
        r.Path.StartsWith("/cdn/", StringComparison.Ordinal)
        || (r.Method == "GET" && r.Path.EndsWith(".safetensors", StringComparison.Ordinal)));

    private async Task<(Dictionary<string, string> Status, Dictionary<string, string> Reasons)> Status()
    {
        var result = await _cli.Run("status", "pipelines/hub.yaml", "--until", "train", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var stages = JsonDocument.Parse(result.Out).RootElement.GetProperty("stages").EnumerateArray().ToList();
        return (stages.ToDictionary(s => s.GetProperty("stage").GetString()!, s => s.GetProperty("status").GetString()!),
            stages.ToDictionary(s => s.GetProperty("stage").GetString()!,
                s => string.Join("; ", s.GetProperty("reasons").EnumerateArray().Select(r => r.GetString()))));
    }

    [Fact]
    public async Task Status_transfers_no_weights_and_a_stage_runs_again_only_when_the_hub_publishes_other_content()
    {
        _cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        _cli.Write("pipelines/hub.yaml", Pipeline);

        var tokenized = await _cli.Run("run", "pipelines/hub.yaml", "--until", "tokenize");
        Assert.True(tokenized.ExitCode == 0, tokenized.Error);
        // The tokenizer stage neither downloads nor even asks about the weights.
        Assert.DoesNotContain(_hub.Requests, r => r.Path.Contains("safetensors", StringComparison.Ordinal));

        var before = _hub.Requests.Count();
        var (status, reasons) = await Status();
        Assert.Equal("up-to-date", status["tokenize"]);
        Assert.Equal("will-run", status["train"]);
        Assert.False(WeightBytesRequested(before));
        Assert.Contains(_hub.Requests.Skip(before), r => r.Method == "HEAD" && r.Path.EndsWith("model.safetensors"));

        var trained = await _cli.Run("run", "pipelines/hub.yaml", "--until", "train", "--json");
        Assert.True(trained.ExitCode == 0, trained.Error);
        // The weights' download shows its progress on stderr; stdout holds the JSON document alone.
        Assert.Contains(trained.Error.Split('\n'), l => l.StartsWith("  train", StringComparison.Ordinal)
            && l.Contains(" bytes", StringComparison.Ordinal) && l.Contains("model.safetensors", StringComparison.Ordinal));
        Assert.Equal("ran", JsonDocument.Parse(trained.Out).RootElement.GetProperty("stages")[3].GetProperty("status").GetString());
        var lockText = File.ReadAllText(Path.Combine(_cli.Folder, "pipelines", "hub.lock.yaml"));
        Assert.Contains($"etag: {_hub.Files["model.safetensors"].Sha256}, size: " +
            $"{_hub.Files["model.safetensors"].Content.Length}, commit: \"{FakeHub.Commit}\"", lockText);
        Assert.Contains($"etag: {_hub.Files["config.json"].GitId}", lockText);

        // A new commit that only edits the README: same content, nothing to run.
        _hub.CurrentCommit = "89abcdef0123456789abcdef0123456789abcdef";
        _hub.Files["README.md"] = new FakeHub.HubFile("# tiny, now documented"u8.ToArray(), Lfs: false);
        before = _hub.Requests.Count();
        (status, _) = await Status();
        Assert.Equal("up-to-date", status["tokenize"]);
        Assert.Equal("up-to-date", status["train"]);
        Assert.False(WeightBytesRequested(before));

        // New weights: train runs again, and status still fetched none of them.
        var republished = Path.Combine(_cli.Folder, "republished");
        SaveModel(republished, ChatTokenizer.LoadGpt2().VocabSize, seed: 2);
        _hub.CurrentCommit = "fedcba9876543210fedcba9876543210fedcba98";
        _hub.Files["model.safetensors"] = new FakeHub.HubFile(
            File.ReadAllBytes(Path.Combine(republished, "model.safetensors")), Lfs: true);
        (status, reasons) = await Status();
        Assert.Equal("up-to-date", status["tokenize"]);
        Assert.Equal("will-run", status["train"]);
        Assert.Equal("input changed: model/model.safetensors", reasons["train"]);
        Assert.False(WeightBytesRequested(before));
    }

    [Fact]
    public async Task Commands_given_a_hub_id_download_with_progress_and_tokenize_fetches_no_weights()
    {
        _cli.Write("lines.jsonl", "{\"text\": \"hello\"}\n");
        var tokenized = await _cli.Run("tokenize", "acme/tiny-llama", "--file", "lines.jsonl", "--json");
        Assert.True(tokenized.ExitCode == 0, tokenized.Error);
        Assert.False(WeightBytesRequested(0));

        var scored = await _cli.Run("score", "acme/tiny-llama", "--text", "hello world, how are you?", "--json");
        Assert.True(scored.ExitCode == 0, scored.Error);
        Assert.Contains(scored.Error.Split('\n'), l => l.StartsWith("  download", StringComparison.Ordinal)
            && l.Contains(" bytes", StringComparison.Ordinal) && l.Contains("model.safetensors", StringComparison.Ordinal));
        JsonDocument.Parse(scored.Out);
    }
}
