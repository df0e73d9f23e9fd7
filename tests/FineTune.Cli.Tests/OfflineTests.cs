using FineTune.Torch.Models;

namespace FineTune.Cli.Tests;

/// <summary>
/// <c>--offline</c>: a Hub model id is served from the Hugging Face cache alone. The endpoint points at a closed port,
/// so any attempt to reach the network would fail with another error than the ones asserted.
/// </summary>
public sealed class OfflineTests : IDisposable
{
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private readonly CliHarness _cli = new();
    private readonly Dictionary<string, string?> _saved = [];

    public OfflineTests()
    {
        foreach (var (name, value) in new[] { ("HF_HUB_CACHE", Path.Combine(_cli.Folder, "hub")), ("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HUB_OFFLINE", null), ("HF_TOKEN", null) })
        {
            _saved[name] = Environment.GetEnvironmentVariable(name);
            Environment.SetEnvironmentVariable(name, value);
        }
    }

    public void Dispose()
    {
        foreach (var (name, value) in _saved) Environment.SetEnvironmentVariable(name, value);
        _cli.Dispose();
    }

    /// <summary>A snapshot as Python's huggingface_hub leaves it: refs/main and snapshots/&lt;commit&gt;/ with the files.</summary>
    private void CacheModel(string repoFolderName, bool withWeights)
    {
        var repo = Path.Combine(_cli.Folder, "hub", repoFolderName);
        var snapshot = Path.Combine(repo, "snapshots", Commit);
        var config = new LlamaConfig { VocabSize = 32, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 2 };
        using (var model = new LlamaForCausalLM(config))
        {
            model.InitializeWeights(3);
            ModelFolder.Save(model, snapshot);
        }
        if (!withWeights) foreach (var file in Directory.GetFiles(snapshot, "*.safetensors")) File.Delete(file);
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), Commit);
    }

    [Fact]
    public async Task A_cached_model_is_used_offline_without_the_network()
    {
        CacheModel("models--acme--tiny", withWeights: true);
        var result = await _cli.Run("score", "acme/tiny", "--ids", "1,2,3", "--offline", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        Assert.Contains("mean_nll", result.Out);
        Assert.Null(Environment.GetEnvironmentVariable("HF_HUB_OFFLINE")); // the flag does not outlive the command
    }

    [Fact]
    public async Task A_model_not_in_the_cache_is_an_error_naming_it_and_saying_it_is_not_cached()
    {
        var result = await _cli.Run("generate", "acme/absent", "--ids", "1,2", "--offline");
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("FT0532", result.Error);
        Assert.Contains("model 'acme/absent' revision 'main' is not in the Hugging Face cache", result.Error);
        Assert.Contains("offline mode", result.Error);
    }

    [Fact]
    public async Task A_partly_cached_model_names_the_missing_file()
    {
        CacheModel("models--acme--partial", withWeights: false);
        var result = await _cli.Run("score", "acme/partial", "--ids", "1,2", "--offline");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("safetensors", result.Error);
        Assert.DoesNotContain("127.0.0.1", result.Error);
    }

    [Fact]
    public async Task The_environment_variable_works_like_the_flag()
    {
        Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", "1");
        var result = await _cli.Run("score", "acme/absent", "--ids", "1,2");
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("FT0532", result.Error);
    }
}
