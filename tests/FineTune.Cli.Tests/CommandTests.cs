using FineTune.TestKit;
namespace FineTune.Cli.Tests;

public class CommandTests
{
    [Fact]
    public async Task Help_lists_the_exit_codes()
    {
        using var cli = new CliHarness();
        var result = await cli.Run("--help");
        Assert.Equal(0, result.ExitCode);
        foreach (var line in new[] { "0    success", "1    internal error", "2    invalid input", "3    a stage failed", "130  cancelled" })
            Assert.Contains(line, result.Out);
        Assert.Contains("run", result.Out);
        Assert.Contains("validate", result.Out);
    }

    [Fact]
    public async Task Validate_prints_every_problem_in_canonical_form_with_exit_code_2()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/x.yaml", """
            name: x
            stages:
              fetch: { path: data.json }
              train:
                learnig_rate: 2e-4
                epochs: -1
            """);
        var result = await cli.Run("validate", "pipelines/x.yaml");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pipelines/x.yaml(5,5): error FT0102: unknown key 'learnig_rate' in train; did you mean 'learning_rate'?", result.Error);
        Assert.Contains("pipelines/x.yaml(6,13): error FT0107: 'train.epochs' must be greater than 0, found -1", result.Error);
        Assert.DoesNotContain("   at ", result.Error); // no stack trace
    }

    [Fact]
    public async Task Validate_json_is_one_document_with_positions()
    {
        using var cli = new CliHarness();
        cli.Write("p.yaml", "name: p\nstages:\n  fetch: { path: d.json }\n  tokenize: { max_length: 0 }\n");
        var result = await cli.Run("validate", "p.yaml", "--json");
        Assert.Equal(2, result.ExitCode);
        var document = System.Text.Json.JsonDocument.Parse(result.Out).RootElement;
        Assert.False(document.GetProperty("valid").GetBoolean());
        var diagnostic = document.GetProperty("diagnostics")[0];
        Assert.Equal("FT0107", diagnostic.GetProperty("code").GetString());
        Assert.Equal(4, diagnostic.GetProperty("line").GetInt32());
    }

    [Fact]
    public async Task Unknown_arguments_are_invalid_input()
    {
        using var cli = new CliHarness();
        cli.Write("p.yaml", "name: p\n");
        var result = await cli.Run("run", "p.yaml", "--bogus");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error FT0001", result.Error);
    }

    [Fact]
    public async Task Schema_command_writes_the_schema()
    {
        using var cli = new CliHarness();
        var result = await cli.Run("schema");
        Assert.Equal(0, result.ExitCode);
        var schema = System.Text.Json.JsonDocument.Parse(result.Out).RootElement;
        Assert.True(schema.GetProperty("properties").GetProperty("stages").GetProperty("properties").TryGetProperty("train", out _));
    }

    [Fact]
    public async Task Shipped_schema_matches_the_generated_one()
    {
        var shipped = Path.Combine(Repository.Root, "pipelines", "pipeline.schema.json");
        Assert.True(File.Exists(shipped), "pipelines/pipeline.schema.json is missing: run 'dotnet finetune schema -o pipelines/pipeline.schema.json'");
        Assert.Equal(Core.Pipeline.PipelineSchema.Generate() + "\n", File.ReadAllText(shipped).ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Shipped_pipelines_are_valid()
    {
        using var cli = new CliHarness();
        foreach (var pipeline in Directory.EnumerateFiles(Path.Combine(Repository.Root, "pipelines"), "*.yaml").Where(p => !p.EndsWith(".lock.yaml")))
        {
            var result = await cli.Run("validate", pipeline);
            Assert.True(result.ExitCode == 0, $"{pipeline}: {result.Error}");
        }
    }
}
