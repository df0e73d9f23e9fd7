using System.Text;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Stages;

public sealed class FormatStageTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private static string Records(int count) => "[\n" + string.Join(",\n", Enumerable.Range(0, count)
        .Select(i => $$"""  {"instruction": "question {{i}}", "input": "", "output": "answer {{i}}"}""")) + "\n]\n";

    /// <summary>Runs fetch on a local file holding <paramref name="data"/>, then format; returns format's output folder.</summary>
    private async Task<(string Output, StageContext Context, RecordingLog Log)> Format(string data, Action<FormatSettings>? configure = null,
        string fileName = "records.json", string? run = null)
    {
        File.WriteAllText(_temp.File(fileName), data, new UTF8Encoding(false));
        var pipeline = StageContexts.Pipeline(_temp.Path);
        pipeline.Stages.Fetch.Path = fileName;
        configure?.Invoke(pipeline.Stages.Format);
        run ??= Guid.NewGuid().ToString("N");

        var fetchContext = StageContexts.For(pipeline, "fetch", _temp.File($"{run}/fetch"));
        await new FetchStage(new FineTune.Core.Fetching.DownloadCache(_temp.Folder("cache"))).RunAsync(fetchContext, CancellationToken.None);

        var log = new RecordingLog();
        var context = StageContexts.For(pipeline, "format", _temp.File($"{run}/format"), log: log,
            upstream: new Dictionary<string, StageContext> { ["fetch"] = fetchContext });
        await new FormatStage().RunAsync(context, CancellationToken.None);
        return (context.OutputDirectory, context, log);
    }

    private static List<Conversation> Read(string folder, string file) => ConversationFile.Read(Path.Combine(folder, file)).ToList();

    [Theory]
    [InlineData(100, 0.05, 5)]
    [InlineData(100, 3.0, 3)]
    [InlineData(10, 0.01, 1)]   // a positive share never rounds down to nothing
    [InlineData(10, 0.25, 3)]   // 2.5 rounds away from zero
    [InlineData(10, 0.0, 0)]
    [InlineData(1, 0.05, 0)]
    public async Task Splits_by_share_or_count(int records, double validation, int expected)
    {
        var (output, context, _) = await Format(Records(records), s => s.Validation = validation);

        var train = Read(output, "train.jsonl");
        var held = Read(output, "validation.jsonl");
        Assert.Equal(expected, held.Count);
        Assert.Equal(records - expected, train.Count);
        Assert.Equal(Enumerable.Range(0, records), train.Concat(held).Select(c => c.SourceIndex).Order());
        Assert.Equal(records, context.Summary["records"]);
        Assert.Equal(expected, context.Summary["validation"]);
    }

    [Theory]
    [InlineData(5.0)]
    [InlineData(0.9)]
    public async Task A_validation_set_that_leaves_no_training_data_is_an_error(double validation)
    {
        var error = await Assert.ThrowsAsync<FineTuneException>(() => Format(Records(5), s => s.Validation = validation));

        Assert.Equal("FT0203", error.Diagnostics[0].Code);
        Assert.Contains("leaving none for training", error.Message);
    }

    [Fact]
    public async Task The_shuffle_is_fixed_by_the_seed()
    {
        var data = Records(50);
        var (first, _, _) = await Format(data, s => s.Seed = 1);
        var (again, _, _) = await Format(data, s => s.Seed = 1);
        var (other, _, _) = await Format(data, s => s.Seed = 2);

        var order = Read(first, "train.jsonl").Select(c => c.SourceIndex).ToList();
        Assert.Equal(File.ReadAllBytes(Path.Combine(first, "train.jsonl")), File.ReadAllBytes(Path.Combine(again, "train.jsonl")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(first, "validation.jsonl")), File.ReadAllBytes(Path.Combine(again, "validation.jsonl")));
        Assert.NotEqual(order, Read(other, "train.jsonl").Select(c => c.SourceIndex).ToList());
        Assert.NotEqual(order, order.Order().ToList());
    }

    [Fact]
    public async Task Without_shuffling_validation_is_the_end_of_the_file()
    {
        var (output, _, _) = await Format(Records(10), s => { s.Shuffle = false; s.Validation = 2; });

        Assert.Equal(Enumerable.Range(0, 8), Read(output, "train.jsonl").Select(c => c.SourceIndex));
        Assert.Equal([8, 9], Read(output, "validation.jsonl").Select(c => c.SourceIndex));
    }

    [Fact]
    public async Task Conversations_take_the_record_system_then_the_setting_then_none()
    {
        const string data = """
            {"instruction": "Who are you", "input": "?", "output": "Zhen Huan.", "system": "You are Zhen Huan."}
            {"instruction": "Hello", "output": "Greetings."}
            {"instruction": "Bye", "input": null, "output": "Farewell.", "system": ""}
            """;
        var (withPrompt, _, _) = await Format(data, s => { s.Shuffle = false; s.Validation = 0; s.SystemPrompt = "Be polite."; }, "chat.jsonl");
        var (withoutPrompt, _, _) = await Format(data, s => { s.Shuffle = false; s.Validation = 0; }, "chat.jsonl");

        var prompted = Read(withPrompt, "train.jsonl");
        Assert.Equal(
            [new("system", "You are Zhen Huan."), new("user", "Who are you?"), new("assistant", "Zhen Huan.")],
            prompted[0].Messages);
        Assert.Equal([new("system", "Be polite."), new("user", "Hello"), new("assistant", "Greetings.")], prompted[1].Messages);
        Assert.Equal(new ChatMessage("system", "Be polite."), prompted[2].Messages[0]);

        var plain = Read(withoutPrompt, "train.jsonl");
        Assert.Equal(["system", "user", "assistant"], plain[0].Messages.Select(m => m.Role));
        Assert.Equal([new("user", "Hello"), new("assistant", "Greetings.")], plain[1].Messages);
        Assert.Equal(["user", "assistant"], plain[2].Messages.Select(m => m.Role));
    }

    [Fact]
    public async Task Counts_duplicates_and_warns_about_empty_outputs()
    {
        const string data = """
            [
              {"instruction": "a", "input": "", "output": "same"},
              {"instruction": "a", "input": "", "output": "same"},
              {"instruction": "a", "output": "same"},
              {"instruction": "b", "input": "", "output": " "},
              {"instruction": "c", "input": "", "output": "other"}
            ]
            """;
        var (output, context, log) = await Format(data, s => s.Validation = 0);

        Assert.Equal(2, context.Summary["duplicates"]);
        Assert.Equal(1, context.Summary["empty_outputs"]);
        Assert.Equal(new SortedDictionary<string, object> { ["duplicate_example"] = 2L, ["empty_answer"] = 1L }, context.Summary["warnings"]);
        Assert.Equal([
            "records.json: 2 records repeat an earlier record exactly (records 1, 2)",
            "records.json: 1 record has an empty assistant answer (the model learns to answer with nothing) (record 3)",
        ], log.Warnings);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "summary.json")));
        Assert.Equal(5, summary.RootElement.GetProperty("records").GetInt32());
        Assert.Equal("records.json", summary.RootElement.GetProperty("source").GetString());
        using var checks = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "checks.json")));
        Assert.Equal(2, checks.RootElement.GetProperty("warnings").GetArrayLength());
    }

    [Fact]
    public async Task Check_errors_fail_the_stage_with_exit_code_2_and_write_nothing()
    {
        const string data = """
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "an answer"}]}
            {"conversations": [{"from": "human", "value": "q"}]}
            """;
        var error = await Assert.ThrowsAsync<FineTuneException>(() => Format(data, s => s.Type = "sharegpt", "chat.jsonl", run: "failed"));

        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0206", 2, "record 1: no assistant message (roles: user)"), (diagnostic.Code, diagnostic.Line, diagnostic.Message));
        Assert.False(File.Exists(_temp.File("failed/format/train.jsonl")));
    }

    [Fact]
    public async Task Text_and_weights_reach_the_output_files()
    {
        const string data = """
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "wrong answer", "weight": 0}, {"role": "user", "content": "again"}, {"role": "assistant", "content": "right answer", "weight": 1}]}
            """;
        var (output, _, _) = await Format(data, s => { s.Type = "openai"; s.Validation = 0; }, "chat.jsonl");

        Assert.Equal([null, 0, null, 1], Assert.Single(Read(output, "train.jsonl")).Messages.Select(m => m.Weight));
    }

    [Fact]
    public async Task Malformed_records_are_all_reported_with_index_field_and_line_of_the_source()
    {
        const string data = """
            [
              {"instruction": "fine", "input": "", "output": "fine"},
              {"instruction": "a", "input": "", "output": 42},
              ["not", "an", "object"],
              {"input": "", "output": "b", "system": false}
            ]
            """;
        var error = await Assert.ThrowsAsync<FineTuneException>(() => Format(data));

        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        var reported = error.Diagnostics.Select(d => (d.Message, d.Line, Path.GetFileName(d.File))).ToList();
        Assert.Equal([
            ("record 1: field 'output' must be a string, found number", 3, "records.json"),
            ("record 2: must be an object with 'instruction' and 'output', found array", 4, "records.json"),
            ("record 3: field 'instruction' is missing (set format.columns.instruction if the data names it differently)", 5, "records.json"),
            ("record 3: field 'system' must be a string, found boolean", 5, "records.json"),
        ], reported);
        Assert.Equal(47, error.Diagnostics[0].Column); // where the 42 starts
    }

    [Fact]
    public async Task Malformed_json_is_reported_at_its_line_and_column()
    {
        const string data = "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"a\" \"output\": \"b\"}\n]\n";

        var error = await Assert.ThrowsAsync<FineTuneException>(() => Format(data));

        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0201", 3, 23), (diagnostic.Code, diagnostic.Line, diagnostic.Column));
        Assert.StartsWith("malformed JSON at line 3, column 23", diagnostic.Message);
    }

    [Fact]
    public async Task A_broken_json_line_keeps_the_indices_of_the_next_records()
    {
        const string data = "{\"instruction\": \"a\", \"output\": \"b\"}\n{oops}\n\n{\"instruction\": \"a\", \"output\": null}\n";

        var error = await Assert.ThrowsAsync<FineTuneException>(() => Format(data, fileName: "x.jsonl"));

        Assert.Equal([("FT0201", 2), ("FT0202", 4)], error.Diagnostics.Select(d => (d.Code, d.Line)));
        Assert.Equal("record 2: field 'output' must be a string, found null", error.Diagnostics[1].Message);
    }

    [Fact]
    public async Task Messages_name_a_url_source_when_there_is_no_local_file()
    {
        var path = _temp.Write("d.json", """[{"instruction": 1, "output": "b"}]""");

        var (_, report) = await DataChecks.RunAsync(path, new DataSourceName("https://example.org/d.json"), new FormatSettings());

        Assert.Equal("https://example.org/d.json: record 0: field 'instruction' must be a string, found number (line 1)",
            Assert.Single(report.ErrorDiagnostics()).Message);
    }

    [Fact]
    public async Task Reads_a_byte_order_mark_and_utf8_text()
    {
        var path = _temp.File("bom.json");
        File.WriteAllBytes(path, Encoding.UTF8.GetPreamble().Concat("""[{"instruction": "你是谁？", "input": "", "output": "我是甄嬛。"}]"""u8.ToArray()).ToArray());

        var (conversations, _) = await DataChecks.RunAsync(path, new DataSourceName("bom.json"), new FormatSettings());

        Assert.Equal(["你是谁？", "我是甄嬛。"], Assert.Single(conversations).Messages.Select(m => m.Content));
    }

    [Fact]
    public async Task Plain_alpaca_output_keeps_its_exact_bytes()
    {
        // The lock files pin the format output of alpaca data; new optional fields must not appear in it.
        var (output, _, _) = await Format("""[{"instruction": "你好", "input": "", "output": "臣妾在。"}]""", s => s.Validation = 0);

        Assert.Equal("{\"messages\":[{\"role\":\"user\",\"content\":\"你好\"},{\"role\":\"assistant\",\"content\":\"臣妾在。\"}],\"source_index\":0}\n",
            File.ReadAllText(Path.Combine(output, "train.jsonl")));
    }
}
