using System.Text.Json.Nodes;
using FineTune.Inference.Tests;

namespace FineTune.Cli.Tests;

/// <summary>
/// --adapter on chat, generate and score: a base model plus a PEFT adapter applied unmerged gives what the same
/// adapter merged into the weights gives (the merged folder is written independently, by merging in place).
/// </summary>
public sealed class AdapterOptionTests(TinyExport export) : IClassFixture<TinyExport>
{
    private static async Task<string> Output(params string[] args)
    {
        using var cli = new CliHarness();
        var result = await cli.Run(args);
        Assert.True(result.ExitCode == 0, result.Error);
        return result.Out;
    }

    [Fact]
    public async Task Chat_with_an_adapter_answers_as_the_merged_model()
    {
        var merged = await Output("chat", export.MergedDirectory, "--prompt", "你是谁？");
        Assert.Equal(merged, await Output("chat", export.ModelDirectory, "--adapter", export.AdapterDirectory,
            "--prompt", "你是谁？"));
        Assert.Equal(merged, await Output("chat", export.AdapterDirectory, "--prompt", "你是谁？"));
        Assert.NotEqual(merged, await Output("chat", export.ModelDirectory, "--prompt", "你是谁？"));
    }

    [Fact]
    public async Task Generate_with_an_adapter_continues_as_the_merged_model()
    {
        var merged = await Output("generate", export.MergedDirectory, "--prompt", "Once upon", "--json");
        var adapted = await Output("generate", export.ModelDirectory, "--adapter", export.AdapterDirectory,
            "--prompt", "Once upon", "--json");
        Assert.Equal(JsonNode.Parse(merged)!["ids"]!.ToJsonString(), JsonNode.Parse(adapted)!["ids"]!.ToJsonString());
    }

    [Fact]
    public async Task Score_with_an_adapter_gives_the_merged_models_log_probabilities()
    {
        var merged = JsonNode.Parse(await Output("score", export.MergedDirectory, "--text", "Hello there", "--json"))!;
        var adapted = JsonNode.Parse(await Output("score", export.ModelDirectory, "--adapter",
            export.AdapterDirectory, "--text", "Hello there", "--json"))!;
        var unadapted = JsonNode.Parse(await Output("score", export.ModelDirectory, "--text", "Hello there",
            "--json"))!;
        var nll = (double)merged["mean_nll"]!;
        Assert.Equal(nll, (double)adapted["mean_nll"]!, 4);
        Assert.NotEqual(nll, (double)unadapted["mean_nll"]!, 4);
    }

    [Fact]
    public async Task A_missing_adapter_folder_is_invalid_input()
    {
        using var cli = new CliHarness();
        var result = await cli.Run("generate", export.ModelDirectory, "--adapter", "no-such-adapter", "--prompt", "x");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("no-such-adapter: error FT1000: adapter folder not found", result.Error);
    }
}
