using FineTune.Core.Data;
using FineTune.TestKit;
using static FineTune.Core.Tests.Data.DataFixtures;

namespace FineTune.Core.Tests.Data;

/// <summary>Each format type read from each file type gives the same conversations.</summary>
public sealed class DataFormatTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    public static TheoryData<string> FileTypes() => new(Extensions);

    private static void AssertMessages(IEnumerable<(string Role, string Content)> expected, Conversation conversation) =>
        Assert.Equal(expected.Select(m => new ChatMessage(m.Role, m.Content)), conversation.Messages);

    [Theory, MemberData(nameof(FileTypes))]
    public async Task Alpaca_records_with_system_and_history(string extension)
    {
        AlpacaRow[] rows =
        [
            new() { Instruction = "Who are you", Input = "?", Output = "Zhen Huan, \"the consort\".", System = "You are Zhen Huan.", History = [["Hello", "Greetings."], ["Well?", "Well."]] },
            new() { Instruction = "多行\n问题", Input = "", Output = "好的，明白。", History = [] },
        ];
        var path = await WriteAsync(_temp.Path, "alpaca", extension, rows);

        var (conversations, report) = await CheckAsync(path, Settings("alpaca", s => s.SystemPrompt = "Be polite."));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        Assert.Equal([0, 1], conversations.Select(c => c.SourceIndex));
        AssertMessages([("system", "You are Zhen Huan."), ("user", "Hello"), ("assistant", "Greetings."), ("user", "Well?"), ("assistant", "Well."),
            ("user", "Who are you?"), ("assistant", "Zhen Huan, \"the consort\".")], conversations[0]);
        AssertMessages([("system", "Be polite."), ("user", "多行\n问题"), ("assistant", "好的，明白。")], conversations[1]);
    }

    [Theory, MemberData(nameof(FileTypes))]
    public async Task ShareGpt_records_with_renamed_roles_and_columns(string extension)
    {
        ShareGptRow[] rows =
        [
            new() { Conversations = [new() { From = "customer", Value = "Hi" }, new() { From = "agent", Value = "Hello, how can I help?" }, new() { From = "human", Value = "Bye" }, new() { From = "gpt", Value = "Goodbye!" }], System = "You sell tea." },
            new() { Conversations = [new() { From = "system", Value = "Own prompt." }, new() { From = "user", Value = "Q" }, new() { From = "assistant", Value = "An answer." }], System = "Column prompt." },
            new() { Conversations = [new() { From = "customer", Value = "Tea?" }, new() { From = "agent", Value = "Green tea." }] },
        ];
        var path = await WriteAsync(_temp.Path, "sharegpt", extension, rows);

        var (conversations, report) = await CheckAsync(path, Settings("sharegpt", s =>
        {
            s.Roles.User = "customer";
            s.Roles.Assistant = "agent";
            s.SystemPrompt = "Default prompt.";
        }));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        AssertMessages([("system", "You sell tea."), ("user", "Hi"), ("assistant", "Hello, how can I help?"), ("user", "Bye"), ("assistant", "Goodbye!")], conversations[0]);
        AssertMessages([("system", "Own prompt."), ("user", "Q"), ("assistant", "An answer.")], conversations[1]);
        AssertMessages([("system", "Default prompt."), ("user", "Tea?"), ("assistant", "Green tea.")], conversations[2]);
    }

    [Theory, MemberData(nameof(FileTypes))]
    public async Task OpenAi_records_keep_weights(string extension)
    {
        OpenAiRow[] rows =
        [
            new() { Messages = [new() { Role = "system", Content = "Be brief." }, new() { Role = "user", Content = "2+2?" }, new() { Role = "assistant", Content = "Five.", Weight = 0 }, new() { Role = "user", Content = "Really?" }, new() { Role = "assistant", Content = "Four.", Weight = 1 }] },
            new() { Messages = [new() { Role = "user", Content = "Hi" }, new() { Role = "assistant", Content = "Hello there." }] },
        ];
        var path = await WriteAsync(_temp.Path, "openai", extension, rows);

        var (conversations, report) = await CheckAsync(path, Settings("openai", s => s.SystemPrompt = "Default."));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        Assert.Equal([null, null, 0, null, 1], conversations[0].Messages.Select(m => m.Weight));
        Assert.Equal(["system", "user", "assistant"], conversations[1].Messages.Select(m => m.Role));
        Assert.Equal("Default.", conversations[1].Messages[0].Content);
    }

    [Theory, MemberData(nameof(FileTypes))]
    public async Task Text_records_for_continued_pretraining(string extension)
    {
        TextRow[] rows = [new() { Text = "Once upon a time,\nthere was a model." }, new() { Text = "第二段文字。" }];
        var path = await WriteAsync(_temp.Path, "text", extension, rows);

        var (conversations, report) = await CheckAsync(path, Settings("text"));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        Assert.Equal(["Once upon a time,\nthere was a model.", "第二段文字。"], conversations.Select(c => c.Text));
        Assert.All(conversations, c => Assert.Empty(c.Messages));
    }

    [Theory, MemberData(nameof(FileTypes))]
    public async Task Columns_map_other_names(string extension)
    {
        TextRow[] rows = [new() { Text = "ask" }];
        var path = await WriteAsync(_temp.Path, "renamed", extension, rows);
        // The same file read as alpaca with both fields in the one column: the mapping, not the names, decides.
        var (conversations, report) = await CheckAsync(path, Settings("alpaca", s => { s.Columns.Instruction = "text"; s.Columns.Output = "text"; }));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        AssertMessages([("user", "ask"), ("assistant", "ask")], Assert.Single(conversations));
    }

    [Fact]
    public async Task ShareGpt_keys_inside_messages_can_be_mapped()
    {
        var path = _temp.Write("chat.jsonl", """
            {"dialog": [{"speaker": "human", "text": "Hi"}, {"speaker": "bot", "text": "Hello!"}]}
            """);

        var (conversations, report) = await CheckAsync(path, Settings("sharegpt", s =>
        {
            s.Columns.Messages = "dialog";
            s.Columns.Role = "speaker";
            s.Columns.Content = "text";
            s.Roles.Assistant = "bot";
        }));

        Assert.False(report.HasErrors, string.Join("\n", report.Lines()));
        AssertMessages([("user", "Hi"), ("assistant", "Hello!")], Assert.Single(conversations));
    }

    [Fact]
    public async Task A_json_object_wrapping_the_list_of_records()
    {
        var path = _temp.Write("wrapped.json", """
            {
              "version": 2,
              "data": [
                {"instruction": "a", "output": "first"},
                {"instruction": "b", "output": "second"}
              ]
            }
            """);

        var (conversations, report) = await CheckAsync(path, Settings("alpaca"));

        Assert.False(report.HasErrors);
        Assert.Equal(["first", "second"], conversations.Select(c => c.Messages[^1].Content));
    }

    [Fact]
    public async Task A_json_file_of_one_pretty_printed_record_or_of_json_lines()
    {
        var single = _temp.Write("one.json", """
            {
              "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
            }
            """);
        var lines = _temp.Write("lines.json", """
            {"text": "one"}
            {"text": "two"}
            """);

        Assert.Single((await CheckAsync(single, Settings("openai"))).Conversations);
        Assert.Equal(["one", "two"], (await CheckAsync(lines, Settings("text"))).Conversations.Select(c => c.Text));
    }

    [Fact]
    public async Task Csv_line_numbers_follow_multi_line_cells_and_tsv_is_detected()
    {
        var csv = _temp.Write("multi.csv", "instruction,output\n\"two\nlines\",fine answer\nq,\n");
        var tsv = _temp.Write("tabs.tsv", "instruction\toutput\nq1\tanswer one\nq2\tanswer two\n");

        var (_, report) = await CheckAsync(csv, Settings("alpaca"));
        var (conversations, tsvReport) = await CheckAsync(tsv, Settings("alpaca"));

        // The empty output of record 1 (line 4) is a warning, located on its own line.
        var empty = Assert.Single(report.Warnings, w => w.Category == "empty_answer");
        Assert.Equal([1], empty.ExampleRecords);
        Assert.Equal(4, empty.Examples[0].Line);
        Assert.False(tsvReport.HasErrors);
        Assert.Equal(["answer one", "answer two"], conversations.Select(c => c.Messages[^1].Content));
    }

    [Fact]
    public void Weights_round_trip_through_the_conversation_file_and_are_absent_when_unset()
    {
        var path = Path.Combine(_temp.Path, "out.jsonl");
        Conversation[] written =
        [
            new([new("user", "q"), new("assistant", "a", Weight: 0), new("assistant", "b", Weight: 1)], 0),
            new([new("user", "q"), new("assistant", "a")], 1),
            new([], 2, Text: "plain"),
        ];

        ConversationFile.Write(path, written);
        var lines = File.ReadAllLines(path);
        var read = ConversationFile.Read(path).ToList();

        Assert.Equal("""{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":0},{"role":"assistant","content":"b","weight":1}],"source_index":0}""", lines[0]);
        Assert.Equal("""{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"source_index":1}""", lines[1]);
        Assert.Equal("""{"messages":[],"source_index":2,"text":"plain"}""", lines[2]);
        Assert.Equal(written[0].Messages, read[0].Messages);
        Assert.Equal("plain", read[2].Text);
        Assert.Null(read[1].Text);
    }
}
