using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.TestKit;
using static FineTune.Core.Tests.Data.DataFixtures;

namespace FineTune.Core.Tests.Data;

/// <summary>Each check category, and the error texts: file, record, line and field.</summary>
public sealed class DataCheckTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    private async Task<DataCheckReport> Check(string type, string fileName, string data, Action<FineTune.Core.Pipeline.FormatSettings>? configure = null) =>
        (await CheckAsync(_temp.Write(fileName, data), Settings(type, configure))).Report;

    private static DataCheckFinding Finding(DataCheckReport report, DataCheckCategory category) =>
        Assert.Single(report.Findings, f => f.Category == category.Id);

    [Fact]
    public async Task A_missing_mapped_field_names_file_record_line_and_the_column_to_set()
    {
        var report = await Check("sharegpt", "data.jsonl", string.Concat(Enumerable.Range(0, 12).Select(i =>
            i == 11 ? """{"messages": [{"from": "human", "value": "q"}]}""" + "\n" : """{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "an answer"}]}""" + "\n")));

        var diagnostic = Assert.Single(report.ErrorDiagnostics());
        Assert.Equal("data.jsonl(12,1): error FT0202: record 11: field 'messages' is missing (the mapping expects column 'conversations'; set format.columns.messages)",
            diagnostic.Format(_temp.Path));
        Assert.Equal(ExitCodes.InvalidInput, report.ToException().ExitCode);
        Assert.Equal([11], Finding(report, DataCheckCategory.MissingMessages).ExampleRecords);
    }

    [Theory]
    [InlineData("data.jsonl", "{\"instruction\": \"a\", \"instruction\": \"b\", \"output\": \"c\"}\n", 1, 22, "record 0: the key 'instruction' appears twice in one object")]
    [InlineData("data.json", "[\n  {\"instruction\": \"a\", \"output\": \"c\", \"extra\": {\"k\": 1, \"\\u006b\": 2}}\n]", 2, 57, "record 0: the key 'k' appears twice")]
    public async Task A_key_twice_in_one_object_is_an_error_where_the_second_one_is(string file, string data, int line,
        int column, string message)
    {
        var report = await Check("alpaca", file, data);
        var diagnostic = Assert.Single(report.ErrorDiagnostics());
        Assert.Equal((DiagnosticCodes.MalformedDataFile, line, column), (diagnostic.Code, diagnostic.Line, diagnostic.Column));
        Assert.Contains(message, diagnostic.Message);
        Assert.Equal(ExitCodes.InvalidInput, report.ToException().ExitCode);
    }

    [Fact]
    public async Task Bad_utf8_is_an_input_error_at_its_byte_and_a_bom_is_accepted()
    {
        var bad = _temp.Path + "/bad.jsonl";
        File.WriteAllBytes(bad, [.. "{\"instruction\": \"ok\", \"output\": \"c\"}\n{\"instruction\": \"a"u8, 0xC3, 0x28,
            .. "\", \"output\": \"c\"}\n"u8]);
        var report = (await CheckAsync(bad, Settings("alpaca", null))).Report;
        var diagnostic = Assert.Single(report.ErrorDiagnostics());
        Assert.Equal((DiagnosticCodes.MalformedDataFile, 2, 19), (diagnostic.Code, diagnostic.Line, diagnostic.Column));
        Assert.Contains("not valid UTF-8: byte 0xC3", diagnostic.Message);
        Assert.Equal(ExitCodes.InvalidInput, report.ToException().ExitCode);

        var bom = _temp.Path + "/bom.jsonl";
        File.WriteAllBytes(bom, [0xEF, 0xBB, 0xBF, .. "{\"instruction\": \"a\", \"output\": \"c\"}\n"u8]);
        Assert.Empty((await CheckAsync(bom, Settings("alpaca", null))).Report.ErrorDiagnostics());
    }

    [Fact]
    public async Task A_wrong_type_is_reported_where_the_value_starts()
    {
        var report = await Check("alpaca", "records.json", """
            [
              {"instruction": "a", "input": "", "output": 42}
            ]
            """);

        var diagnostic = Assert.Single(report.ErrorDiagnostics());
        Assert.Equal(("record 0: field 'output' must be a string, found number", 2, 47), (diagnostic.Message, diagnostic.Line, diagnostic.Column));
    }

    [Fact]
    public async Task A_csv_without_a_mapped_column_is_one_error_for_the_file()
    {
        var report = await Check("alpaca", "data.csv", "question,answer\nq,a\nq2,a2\n", s => s.Columns.Output = "answer");

        var diagnostic = Assert.Single(report.ErrorDiagnostics());
        Assert.Equal("the file has no column 'instruction' for field 'instruction' (its columns: question, answer); set format.columns.instruction to the column that holds it",
            diagnostic.Message);
        Assert.Equal(1, diagnostic.Line);
    }

    [Fact]
    public async Task OpenAi_categories_each_counted_with_their_records()
    {
        var report = await Check("openai", "chat.jsonl", """
            {"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine answer"}]}
            {"prompt": "no messages"}
            {"messages": [{"role": "user", "content": "q", "mood": "happy"}, {"role": "assistant", "content": "fine answer"}]}
            {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "fine answer"}]}
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "fine answer"}]}
            {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]}
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "fine answer", "weight": 2}]}
            {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "fine answer"}]}
            {"messages": [{"role": "user", "content": "q", "name": "bob"}, {"role": "assistant", "content": null, "tool_calls": []}, {"role": "assistant", "content": "fine answer"}]}
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "fine answer", "weight": 0}]}
            """);

        Assert.Equal([1], Finding(report, DataCheckCategory.MissingMessages).ExampleRecords);
        Assert.Equal([2], Finding(report, DataCheckCategory.UnknownKey).ExampleRecords);
        Assert.Equal([3], Finding(report, DataCheckCategory.UnrecognizedRole).ExampleRecords);
        Assert.Equal([4], Finding(report, DataCheckCategory.MissingContent).ExampleRecords);
        Assert.Equal([5], Finding(report, DataCheckCategory.NoAssistantMessage).ExampleRecords);
        Assert.Equal([6, 7], Finding(report, DataCheckCategory.InvalidWeight).ExampleRecords);
        Assert.Equal([8], Finding(report, DataCheckCategory.DroppedToolCalls).ExampleRecords);
        Assert.Equal([9], Finding(report, DataCheckCategory.NothingTrained).ExampleRecords);
        Assert.Equal(10, report.Records);
        Assert.Contains("record 2: field 'messages'[0] has the key 'mood'", Finding(report, DataCheckCategory.UnknownKey).Example);
        Assert.Contains("weight is only allowed on assistant messages", Finding(report, DataCheckCategory.InvalidWeight).Examples[1].Message);
        Assert.Equal(Severity.Warning, Finding(report, DataCheckCategory.NothingTrained).Severity);
    }

    [Fact]
    public async Task Empty_examples_are_errors_and_empty_or_very_short_answers_warnings()
    {
        var report = await Check("sharegpt", "chat.jsonl", """
            {"conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": ""}]}
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]}
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "..."}]}
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "是。"}]}
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "x"}]}
            """);

        Assert.Equal([0], Finding(report, DataCheckCategory.EmptyExample).ExampleRecords);
        Assert.Equal([1], Finding(report, DataCheckCategory.EmptyAnswer).ExampleRecords);
        Assert.Equal([2, 4], Finding(report, DataCheckCategory.ShortAnswer).ExampleRecords);
        Assert.True(report.HasErrors);
    }

    [Fact]
    public async Task Duplicates_are_counted_with_their_first_records()
    {
        var report = await Check("text", "text.jsonl", """
            {"text": "alpha"}
            {"text": "beta"}
            {"text": "alpha"}
            {"text": "alpha"}
            {"text": "beta"}
            """);

        var duplicates = Finding(report, DataCheckCategory.DuplicateExample);
        Assert.Equal(3, duplicates.Count);
        Assert.Equal([2, 3, 4], duplicates.ExampleRecords);
        Assert.Equal("record 2: repeats record 0", duplicates.Example);
        Assert.Equal("3 records repeat an earlier record exactly (records 2, 3, 4)", duplicates.Summary());
        Assert.False(report.HasErrors);
    }

    [Fact]
    public async Task Errors_list_three_records_per_category_then_a_count()
    {
        var data = string.Join("\n", Enumerable.Range(0, 30).Select(i => $$"""{"instruction": "q", "output": {{i}}}"""));

        var error = (await Check("alpaca", "bad.jsonl", data)).ToException();

        Assert.Equal(4, error.Diagnostics.Count);
        Assert.Equal([1, 2, 3], error.Diagnostics.Take(3).Select(d => d.Line));
        Assert.Equal("30 records have a field of the wrong type (records 0, 1, 2, ...)", error.Diagnostics[3].Message);
        Assert.Equal(0, error.Diagnostics[3].Line);
    }

    [Fact]
    public async Task Unrecognized_sharegpt_roles_name_the_accepted_ones()
    {
        var report = await Check("sharegpt", "chat.json", """
            [{"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "r"}, {"value": "no role"}]}]
            """);

        var roles = Finding(report, DataCheckCategory.UnrecognizedRole);
        Assert.Equal(1, roles.Count); // one record, however many of its messages
        Assert.Equal("record 0: field 'messages' (column 'conversations')[1]: role 'observation' is not recognized; expected one of assistant, gpt, human, system, user (name others with format.roles.user, .assistant or .system)",
            roles.Examples[0].Message);
        Assert.Equal("record 0: field 'messages' (column 'conversations')[2] has no 'from' (the role); set format.columns.role if the data names it differently",
            roles.Examples[1].Message);
    }

    [Fact]
    public async Task Malformed_alpaca_history_is_a_wrong_type()
    {
        var report = await Check("alpaca", "h.jsonl", """
            {"instruction": "q", "output": "answer", "history": [["only one"]]}
            """);

        Assert.Equal("record 0: field 'history' item 0 must be a [user, assistant] pair of strings, found array", Finding(report, DataCheckCategory.WrongType).Example);
    }

    [Fact]
    public async Task An_unreadable_parquet_file_is_reported()
    {
        var report = await Check("alpaca", "broken.parquet", "PAR1 not really");

        Assert.Equal(DataCheckCategory.MalformedFile.Id, Assert.Single(report.Errors).Category);
    }

    [Fact]
    public async Task The_report_is_written_as_json()
    {
        var report = await Check("text", "t.jsonl", "{\"text\": \"a\"}\n{\"text\": \"a\"}\n");

        using var json = System.Text.Json.JsonDocument.Parse(report.ToJson());
        var warning = Assert.Single(json.RootElement.GetProperty("warnings").EnumerateArray());
        Assert.Equal("duplicate_example", warning.GetProperty("category").GetString());
        Assert.Equal(1, warning.GetProperty("count").GetInt32());
        Assert.Equal(1, warning.GetProperty("records")[0].GetInt32());
        Assert.Equal("warning", warning.GetProperty("severity").GetString());
        Assert.Empty(json.RootElement.GetProperty("errors").EnumerateArray());
        Assert.Equal(2, json.RootElement.GetProperty("records").GetInt32());
    }
}

public sealed class FormatSettingsTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Columns_and_roles_are_read_from_the_pipeline_file()
    {
        var path = _temp.Write("p.yaml", """
            name: chat
            stages:
              fetch: { path: d.json }
              format: { type: sharegpt, columns: { messages: dialog, system: sys }, roles: { user: customer, assistant: agent } }
            """);

        var result = FineTune.Core.Pipeline.PipelineLoader.Load(path);

        Assert.Empty(result.Diagnostics);
        var format = result.Pipeline!.Stages.Format;
        Assert.Equal(("dialog", "sys", "customer", "agent"), (format.Columns.Messages, format.Columns.System, format.Roles.User, format.Roles.Assistant));
        Assert.Null(format.Columns.Instruction);
    }

    [Fact]
    public void A_column_of_another_format_type_is_a_located_error()
    {
        var path = _temp.Write("p.yaml", """
            name: chat
            stages:
              fetch: { path: d.json }
              format:
                type: openai
                columns:
                  instruction: question
                roles: { user: customer }
            """);

        var messages = FineTune.Core.Pipeline.PipelineLoader.Load(path).Diagnostics.Select(d => (d.Line, d.Message)).ToList();

        Assert.Equal([
            (7, "format: columns.instruction does not apply to type openai; it reads messages"),
            (8, "format: roles apply to type sharegpt only; type openai uses the standard role names"),
        ], messages);
    }
}
