using System.Text;
using FineTune.Core.Tests.Hub;

namespace FineTune.Cli.Tests;

/// <summary>
/// HF_TOKEN never leaves the process except in the Authorization header: every command is run against a gated fake
/// Hub on 127.0.0.1 (with the right token and with a wrong one, successes and failures, --verbose stack traces
/// included), and every output, log, lock file, report, run record, job file and cache file is searched for it.
/// </summary>
public sealed class SecretsTests : IDisposable
{
    private const string Token = "hf_FineTuneSecretsTest0123456789abcdefXYZ";

    private static readonly string[] Variables =
        ["HF_ENDPOINT", "HF_TOKEN", "HF_HUB_TOKEN", "FINETUNE_HF_TOKEN_OVER_HTTP", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
            "FINETUNE_CACHE"];

    private readonly Dictionary<string, string?> _saved = Variables.ToDictionary(v => v,
        Environment.GetEnvironmentVariable);
    private readonly FakeHub _hub = new() { RequiredToken = Token };
    private readonly CliHarness _cli = new();

    public SecretsTests()
    {
        // The Hub serves a real tiny model, so that commands get as far as training and generating.
        _hub.Files.Clear();
        foreach (var (name, bytes) in HostileInputTests.TinyModel.Value)
            _hub.Files[name] = new(bytes, Lfs: name.EndsWith(".safetensors", StringComparison.Ordinal));

        Environment.SetEnvironmentVariable("HF_ENDPOINT", _hub.Endpoint.ToString());
        Environment.SetEnvironmentVariable("HF_TOKEN", Token);
        Environment.SetEnvironmentVariable("HF_HUB_TOKEN", null);
        Environment.SetEnvironmentVariable("FINETUNE_HF_TOKEN_OVER_HTTP", "1"); // the fake Hub speaks http
        Environment.SetEnvironmentVariable("HF_HUB_OFFLINE", null);
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", Path.Combine(_cli.Folder, "hf-cache"));
        Environment.SetEnvironmentVariable("FINETUNE_CACHE", Path.Combine(_cli.Folder, "finetune-cache"));
    }

    public void Dispose()
    {
        foreach (var (name, value) in _saved) Environment.SetEnvironmentVariable(name, value);
        _cli.Dispose();
        _hub.Dispose();
    }

    private static readonly string[][] Commands =
    [
        ["validate", "p.yaml"], ["validate", "p.yaml", "--json"], ["status", "p.yaml"], ["status", "p.yaml", "--json"],
        ["run", "p.yaml", "--until", "tokenize"], ["inspect", "p.yaml", "-n", "1"], ["validate", "p.yaml", "--data"],
        ["run", "p.yaml"], ["run", "p.yaml", "--json"], ["run", "p.yaml", "--verbose"], ["report", "p.yaml"],
        ["diff", "p.yaml"], ["cache", "gc", ".", "--dry-run"],
        ["launch", "p.yaml", "--slurm", "-o", "job.sh"], ["launch", "p.yaml", "--k8s", "-o", "job.yaml"],
        ["tokenize", FakeHub.Repo, "--file", "in.jsonl"], ["score", FakeHub.Repo, "--ids", "1,2", "--verbose"],
        ["generate", FakeHub.Repo, "--ids", "1", "--max-new-tokens", "2"], ["chat", FakeHub.Repo, "--prompt", "hi"],
        ["tokenize", FakeHub.Repo + "@nowhere", "--file", "in.jsonl", "--verbose"],
    ];

    [Fact]
    public async Task The_token_is_sent_to_the_hub_and_appears_nowhere_else()
    {
        _cli.Write("data.json", EndToEndTests.Dataset());
        _cli.Write("in.jsonl", "{\"text\": \"hi\"}\n");
        _cli.Write("p.yaml", $"""
            name: secrets
            stages:
              fetch: {"{"} path: data.json {"}"}
              format: {"{"} validation: 2 {"}"}
              tokenize: {"{"} tokenizer: {FakeHub.Repo}, chat_template: chatml, max_length: 64 {"}"}
              train: {"{"} model: {FakeHub.Repo}, method: lora, max_steps: 1 {"}"}
            """);
        var leaks = new List<string>();
        var runs = 0;
        foreach (var wrongToken in new[] { false, true })
        {
            // A wrong token: the Hub answers 401, and the error messages are searched too.
            _hub.RequiredToken = wrongToken ? "hf_another" : Token;
            if (wrongToken) Directory.Delete(Path.Combine(_cli.Folder, "hf-cache"), recursive: true);
            foreach (var args in Commands)
            {
                var result = await _cli.Run(args).WaitAsync(TimeSpan.FromMinutes(2));
                runs++;
                Console.WriteLine($"{result.ExitCode,3} {string.Join(' ', args)}: " +
                    $"{result.Error.Split('\n').FirstOrDefault(l => l.Contains("error", StringComparison.Ordinal))}");
                if ((result.Out + result.Error).Contains(Token, StringComparison.Ordinal))
                    leaks.Add($"output of {string.Join(' ', args)}");
            }
        }
        var files = Directory.EnumerateFiles(_cli.Folder, "*", SearchOption.AllDirectories).ToList();
        var needle = Encoding.UTF8.GetBytes(Token);
        leaks.AddRange(files.Where(f => File.ReadAllBytes(f).AsSpan().IndexOf(needle) >= 0)
            .Select(f => Path.GetRelativePath(_cli.Folder, f)));

        Assert.Contains(_hub.Requests, r => r.Headers.TryGetValue("authorization", out var a) && a == $"Bearer {Token}");
        Assert.True(files.Count > 10, $"only {files.Count} files were written; the commands did not get far");
        Assert.True(leaks.Count == 0, $"HF_TOKEN found in: {string.Join(", ", leaks)}");
        Console.WriteLine($"secrets: {runs} commands, {files.Count} files searched, no HF_TOKEN found");
    }
}
