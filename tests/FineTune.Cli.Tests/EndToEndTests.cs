using System.Text.Json;

namespace FineTune.Cli.Tests;

/// <summary>The whole pipeline on a tiny model and a small fixture dataset, through the CLI.</summary>
public class EndToEndTests
{
    internal static string Dataset()
    {
        var records = new List<object>();
        for (var i = 0; i < 6; i++)
        {
            records.Add(new { instruction = "你是谁？", input = "", output = "我是甄嬛，家父是大理寺少卿甄远道。" });
            records.Add(new { instruction = "你好", input = "", output = "皇上好，我是甄嬛。" });
            records.Add(new { instruction = $"今天是第{i}天", input = "", output = "臣妾知道了。" });
        }
        return JsonSerializer.Serialize(records, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    internal const string Pipeline = """
        name: tiny
        stages:
          fetch: { path: data.json }
          format: { validation: 3 }
          tokenize: { max_length: 64 }
          train:
            builtin: { hidden_size: 32, layers: 1, heads: 2, kv_heads: 1, intermediate_size: 64 }
            epochs: 2
            batch_size: 4
            gradient_accumulation: 1
            learning_rate: 1e-2
          evaluate:
            prompts: ["你是谁？"]
            max_new_tokens: 8
        """;

    /// <summary>Each stage's status (ran, up-to-date) in the output of <c>run --json</c>.</summary>
    private static Dictionary<string, string?> StageStatuses(string runJson) =>
        JsonDocument.Parse(runJson).RootElement.GetProperty("stages").EnumerateArray()
            .ToDictionary(s => s.GetProperty("stage").GetString()!, s => s.GetProperty("status").GetString());

    [Fact]
    public async Task Runs_all_stages_then_nothing_then_only_what_a_setting_touches()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", Dataset());
        cli.Write("pipelines/tiny.yaml", Pipeline);

        var noReport = await cli.Run("report", "pipelines/tiny.yaml");
        Assert.Equal(2, noReport.ExitCode);
        Assert.Contains("error FT0700:", noReport.Error);

        var first = await cli.Run("run", "pipelines/tiny.yaml");
        Assert.True(first.ExitCode == 0, first.Error + first.Out);
        foreach (var stage in new[] { "fetch", "format", "tokenize", "train", "evaluate", "export" })
            Assert.Contains($"{stage,-9} done in", first.Out);
        var lockFile = Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml");
        Assert.True(File.Exists(lockFile));
        var lockText = File.ReadAllText(lockFile);
        Assert.Contains("libtorch:", lockText);
        Assert.Contains("final_loss:", lockText);

        var report = await cli.Run("report", "pipelines/tiny.yaml", "--json");
        Assert.True(report.ExitCode == 0, report.Error);
        var where = JsonDocument.Parse(report.Out).RootElement;
        Assert.True(File.Exists(where.GetProperty("markdown").GetString()));
        var plots = where.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).ToList();
        Assert.Equal(["loss.png", "learning_rate.png", "token_lengths.png"], plots.Select(Path.GetFileName));
        Assert.All(plots, plot => Assert.True(File.Exists(plot), plot));
        var figures = where.GetProperty("report");
        Assert.Equal(3, figures.GetProperty("sample").GetProperty("examples").GetInt32());
        Assert.Equal(3, figures.GetProperty("sample_answers").GetArrayLength());
        Assert.StartsWith("builtin:tiny", figures.GetProperty("base").GetString());
        var text = await cli.Run("report", "pipelines/tiny.yaml");
        Assert.Equal(where.GetProperty("markdown").GetString(), text.Out.Split('\n')[0].Trim());

        var second = await cli.Run("run", "pipelines/tiny.yaml");
        Assert.Equal(0, second.ExitCode);
        Assert.Contains("Everything is up to date; nothing to do", second.Out);
        Assert.Equal(lockText, File.ReadAllText(lockFile));

        var changed = await cli.Run("run", "pipelines/tiny.yaml", "--set", "train.learning_rate=2e-2", "--json");
        Assert.True(changed.ExitCode == 0, changed.Error);
        var stages = StageStatuses(changed.Out);
        Assert.Equal("up-to-date", stages["fetch"]);
        Assert.Equal("up-to-date", stages["format"]);
        Assert.Equal("up-to-date", stages["tokenize"]);
        Assert.Equal("ran", stages["train"]);
        Assert.Equal("ran", stages["evaluate"]);
        Assert.Equal("ran", stages["export"]);
        Assert.Contains("train     runs: settings changed: learning_rate 0.01 -> 0.02", changed.Error);

        var export = JsonDocument.Parse(changed.Out).RootElement.GetProperty("export_directory").GetString()!;
        foreach (var file in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json" })
            Assert.True(File.Exists(Path.Combine(export, file)), file);

        var chat = await cli.Run("chat", export, "--prompt", "你是谁？", "--max-new-tokens", "4");
        Assert.True(chat.ExitCode == 0, chat.Error);
        Assert.False(string.IsNullOrWhiteSpace(chat.Out));

        var viaPipeline = await cli.Run("chat", "pipelines/tiny.yaml", "--prompt", "你是谁？", "--max-new-tokens", "4", "--set", "train.learning_rate=2e-2");
        Assert.Equal(2, viaPipeline.ExitCode); // chat takes no --set: an unknown option is invalid input
    }

    [Fact]
    public async Task With_dtype_auto_the_stages_after_train_run_on_the_device_it_recorded()
    {
        // On a CPU, auto records the dtype it chose beside the device ("cpu, auto bfloat16" or "cpu, auto float32").
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", Dataset());
        cli.Write("pipelines/tiny.yaml", Pipeline);
        var result = await cli.Run("run", "pipelines/tiny.yaml", "--set", "train.dtype=auto", "--json");
        Assert.True(result.ExitCode == 0, result.Error);
        var stages = StageStatuses(result.Out);
        Assert.Equal("ran", stages["evaluate"]);
        Assert.Equal("ran", stages["export"]);
        Assert.Matches(@"device: ""?cpu, auto (bfloat16|float32)",
            File.ReadAllText(Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml")));
    }

    [Fact]
    public async Task The_same_pipeline_run_in_two_folders_writes_byte_identical_lock_files()
    {
        var locks = new List<string>();
        foreach (var _ in new[] { 1, 2 })
        {
            using var cli = new CliHarness();
            cli.Write("pipelines/data.json", Dataset());
            cli.Write("pipelines/tiny.yaml", Pipeline);
            var result = await cli.Run("run", "pipelines/tiny.yaml");
            Assert.True(result.ExitCode == 0, result.Error + result.Out);
            locks.Add(File.ReadAllText(Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml")));

            // The figures that differ between identical runs went to the run record beside the store instead.
            var runs = Path.Combine(cli.Folder, "pipelines", ".finetune", "runs");
            var record = JsonDocument.Parse(File.ReadAllText(Directory.GetFiles(runs, "*.json").Single()));
            var train = record.RootElement.GetProperty("stages").EnumerateArray()
                .Single(s => s.GetProperty("stage").GetString() == "train");
            Assert.True(train.GetProperty("timings").GetProperty("tokens_per_s").GetDouble() > 0);
            Assert.True(train.GetProperty("duration_s").GetDouble() > 0);
            Assert.Contains("elapsed_s", File.ReadAllText(Directory.GetFiles(runs, "*.train.jsonl").Single()));
        }
        Assert.Equal(locks[0], locks[1]);
        foreach (var word in new[] { "duration_s", "tokens_per_s", "mfu", "threads", "elapsed", "estimated" })
            Assert.DoesNotContain(word, locks[0]);
    }

    [Fact]
    public async Task A_missing_data_file_is_reported_at_the_setting_and_changes_nothing()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/tiny.yaml", Pipeline);
        var result = await cli.Run("run", "pipelines/tiny.yaml");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("pipelines/tiny.yaml(3,18): error FT0301", result.Error);
        Assert.False(File.Exists(Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml")));
    }

    [Fact]
    public async Task A_malformed_record_is_reported_by_index_and_field_with_exit_code_2()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", """[{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 5}]""");
        cli.Write("pipelines/tiny.yaml", Pipeline);
        var result = await cli.Run("run", "pipelines/tiny.yaml");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("record 1: field 'output'", result.Error);
    }
}
