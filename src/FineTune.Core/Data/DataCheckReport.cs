using FineTune.Core;
using System.Text.Json;
using System.Text.Json.Serialization;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Data;

/// <summary>
/// A kind of problem the data checks look for. Most mirror the checks OpenAI's fine-tuning guide runs on chat data
/// (missing messages list, unknown keys, unrecognized roles, missing content, no assistant message, weights);
/// the rest catch what quietly spoils a fine-tune (empty, duplicate or near-empty examples).
/// </summary>
internal sealed record DataCheckCategory(string Id, Severity Severity, string Code, string Description)
{
    // Errors: the record cannot become a sound training example.
    public static readonly DataCheckCategory MalformedFile = new("malformed_file", Severity.Error,
        DiagnosticCodes.MalformedDataFile, "are not readable (malformed JSON or CSV)");
    public static readonly DataCheckCategory NotAnObject = new("not_an_object", Severity.Error,
        DiagnosticCodes.InvalidRecord, "are not objects");
    public static readonly DataCheckCategory MissingMessages = new("missing_messages", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have no messages list");
    public static readonly DataCheckCategory MissingField = new("missing_field", Severity.Error,
        DiagnosticCodes.InvalidRecord, "miss a field the mapping expects");
    public static readonly DataCheckCategory WrongType = new("wrong_type", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have a field of the wrong type");
    public static readonly DataCheckCategory UnknownKey = new("unknown_key", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have messages with keys OpenAI does not allow");
    public static readonly DataCheckCategory UnrecognizedRole = new("unrecognized_role", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have messages with a missing or unrecognized role");
    public static readonly DataCheckCategory MissingContent = new("missing_content", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have messages without content");
    public static readonly DataCheckCategory InvalidWeight = new("invalid_weight", Severity.Error,
        DiagnosticCodes.InvalidRecord, "have a message weight that is not 0 or 1 on an assistant message");
    public static readonly DataCheckCategory NoAssistantMessage = new("no_assistant_message", Severity.Error,
        DiagnosticCodes.NothingToLearn, "have no assistant message to learn from");
    public static readonly DataCheckCategory EmptyExample = new("empty_example", Severity.Error,
        DiagnosticCodes.NothingToLearn, "are empty");

    // Warnings: trainable, but probably not what was meant.
    public static readonly DataCheckCategory DuplicateExample = new("duplicate_example", Severity.Warning,
        DiagnosticCodes.DuplicateRecord, "repeat an earlier record exactly");
    public static readonly DataCheckCategory EmptyAnswer = new("empty_answer", Severity.Warning,
        DiagnosticCodes.EmptyAnswer, "have an empty assistant answer (the model learns to answer with nothing)");
    public static readonly DataCheckCategory ShortAnswer = new("short_answer", Severity.Warning,
        DiagnosticCodes.ShortAnswer, "have a very short assistant answer (one character, or no letter or digit)");
    public static readonly DataCheckCategory NothingTrained = new("nothing_trained", Severity.Warning,
        DiagnosticCodes.NothingTrained, "give every assistant message weight 0, so nothing in them is trained");
    public static readonly DataCheckCategory DroppedToolCalls = new("dropped_tool_calls", Severity.Warning,
        DiagnosticCodes.DroppedToolCalls, "carry tool or function calls, which the chat template does not render " +
        "(only the content is kept)");
}

/// <summary>What the checks found of one category: how many records, the first few of them, and what was wrong
/// there.</summary>
internal sealed record DataCheckFinding(
    [property: JsonPropertyName("category")] string Category,
    [property: JsonIgnore] Severity Severity,
    [property: JsonPropertyName("description")] string Description,
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("records")] IReadOnlyList<int> ExampleRecords,
    [property: JsonIgnore] IReadOnlyList<Diagnostic> Examples,
    [property: JsonPropertyName("example")] string? Example)
{
    [JsonPropertyName("severity"), JsonPropertyOrder(-1)]
    public string SeverityName => Severity == Severity.Error ? "error" : "warning";

    /// <summary>"3 records are empty (records 4, 9, 12)" with at most <paramref name="shown"/> record
    /// numbers.</summary>
    public string Summary(int shown = DataCheckReport.RecordsShown) =>
        $"{Count} record{(Count == 1 ? "" : "s")} {(Count == 1 ? Singular(Description) : Description)}" +
        (ExampleRecords.Count == 0 ? "" :
        $" (record{(Count == 1 ? "" : "s")} {string.Join(", ", ExampleRecords.Take(shown))}" +
        $"{(Count > shown ? ", ..." : "")})");

    /// <summary>Descriptions are written for many records ("are empty"); one record "is empty".</summary>
    private static string Singular(string description)
    {
        var space = description.IndexOf(' ');
        var verb = description[..space];
        var singular = verb switch { "are" => "is", "have" => "has", "miss" => "misses", "carry" => "carries",
            _ => verb + "s" };
        return singular + description[space..];
    }

}

/// <summary>
/// The result of checking a data file: errors (the format stage refuses the data) and warnings (it goes on and says
/// so), one finding per category with counts and example record numbers (0-based, as <c>jq '.[n]'</c> counts).
/// </summary>
internal sealed class DataCheckReport
{
    /// <summary>How many record numbers a message names per category.</summary>
    public const int RecordsShown = 3;

    /// <summary>How many record numbers a finding keeps (checks.json lists these).</summary>
    public const int RecordsKept = 10;

    private readonly DataSourceName _source;

    public DataCheckReport(DataSourceName source, int records, IReadOnlyList<DataCheckFinding> findings)
    {
        _source = source;
        Records = records;
        Findings = findings;
    }

    [JsonPropertyName("source")] public string Source => _source.Display;

    /// <summary>Records read from the file, including broken ones.</summary>
    [JsonPropertyName("records")] public int Records { get; }

    [JsonIgnore] public IReadOnlyList<DataCheckFinding> Findings { get; }

    [JsonPropertyName("errors")] public IReadOnlyList<DataCheckFinding> Errors
        => Findings.Where(f => f.Severity == Severity.Error).ToList();

    [JsonPropertyName("warnings")] public IReadOnlyList<DataCheckFinding> Warnings
        => Findings.Where(f => f.Severity == Severity.Warning).ToList();

    [JsonIgnore] public bool HasErrors => Findings.Any(f => f.Severity == Severity.Error);

    /// <summary>
    /// The errors as diagnostics: the first <see cref="RecordsShown"/> of each category at their own file position,
    /// in file order, then one line per category that had more, with its count and first records.
    /// </summary>
    public IReadOnlyList<Diagnostic> ErrorDiagnostics()
    {
        var errors = Errors;
        var located = errors.SelectMany(f => f.Examples.Take(RecordsShown))
            .OrderBy(d => d.Line).ThenBy(d => d.Column)
            .ToList();
        foreach (var finding in errors.Where(f => f.Count > RecordsShown))
            located.Add(_source.Diagnostic(Severity.Error, finding.Examples[0].Code, finding.Summary()));
        return located;
    }

    /// <summary>The exception the format stage throws when there are errors (exit code 2).</summary>
    public FineTuneException ToException() => new(ErrorDiagnostics(), ExitCodes.InvalidInput);

    /// <summary>One line per finding, errors first: what <c>validate</c> prints and the stage logs.</summary>
    public IEnumerable<string> Lines() => Findings
        .OrderBy(f => f.Severity == Severity.Error ? 0 : 1)
        .Select(f => $"{(f.Severity == Severity.Error ? "error" : "warning")} {f.Category}: {f.Summary()}");

    /// <summary>Counts per category, for the stage summary and the lock file.</summary>
    public SortedDictionary<string, object> Counts(Severity severity) => new(
        Findings.Where(f => f.Severity == severity).ToDictionary(f => f.Category, f => (object)(long)f.Count),
            StringComparer.Ordinal);

    public int CountOf(DataCheckCategory category) => Findings.FirstOrDefault(f => f.Category == category.Id)?.Count
        ?? 0;

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions) + "\n";

    private static JsonSerializerOptions JsonOptions => JsonText.Indented;
}

/// <summary>Gathers findings while the data is read, mapped and checked; <see cref="Build"/> makes the
/// report.</summary>
internal sealed class DataCheckCollector(DataSourceName source)
{
    private sealed class Tally(DataCheckCategory category)
    {
        public DataCheckCategory Category { get; } = category;
        public int Count;
        public int LastRecord = -1;
        public readonly List<int> Records = [];
        public readonly List<Diagnostic> Examples = [];
        public string? FirstMessage;
    }

    private readonly Dictionary<string, Tally> _tallies = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    public DataSourceName Source { get; } = source;

    /// <summary>Errors so far, counting every problem (not records).</summary>
    public int ErrorCount { get; private set; }

    /// <summary>
    /// Notes a problem of <paramref name="category"/> in record <paramref name="record"/> (-1: the file as a whole).
    /// A record counts once per category however many problems of that kind it has; each problem up to the first
    /// few is kept as a located diagnostic.
    /// </summary>
    public void Report(DataCheckCategory category, int record, string message, int line = 0, int column = 0)
    {
        if (!_tallies.TryGetValue(category.Id, out var tally))
        {
            _tallies[category.Id] = tally = new Tally(category);
            _order.Add(category.Id);
        }
        if (category.Severity == Severity.Error) ErrorCount++;
        if (record < 0 || record != tally.LastRecord)
        {
            tally.Count++;
            if (record >= 0 && tally.Records.Count < DataCheckReport.RecordsKept) tally.Records.Add(record);
            tally.LastRecord = record;
        }
        tally.FirstMessage ??= message;
        if (tally.Examples.Count < DataCheckReport.RecordsKept)
            tally.Examples.Add(Source.Diagnostic(category.Severity, category.Code, message, line, column));
    }

    public DataCheckReport Build(int records) => new(Source, records, _order
        .Select(id => _tallies[id])
        .Select(t => new DataCheckFinding(t.Category.Id, t.Category.Severity, t.Category.Description, t.Count,
            t.Records, t.Examples, t.FirstMessage))
        .ToList());
}
