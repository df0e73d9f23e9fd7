using FineTune.Core;
using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// Turns the fetched records into conversations (<see cref="RecordMapper"/> says how for each format type), checks
/// them (<see cref="DataChecks"/>), shuffles them with a seed and splits off a validation set. Writes train.jsonl
/// and validation.jsonl (<see cref="ConversationFile"/>), checks.json (the <see cref="DataCheckReport"/>) and
/// summary.json. Data with check errors fails the stage with exit code 2; warnings go to the log and the summary.
/// </summary>
internal sealed class FormatStage : Stage<FormatSettings>
{
    public override string Name => "format";

    // 2: formats, column mapping, data checks and checks.json.
    public override int ImplementationVersion => 2;

    public override IReadOnlyList<string> DependsOn => ["fetch"];

    protected override async Task RunAsync(StageContext context, FormatSettings settings,
        CancellationToken cancellationToken)
    {
        var source = SourceName(context);
        var (conversations, report) = await DataChecks.RunAsync(FetchedDataFile(context), source, settings,
            cancellationToken);
        if (report.HasErrors) throw report.ToException();
        if (conversations.Count == 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NoTrainingRecords,
                $"{source.Display} holds no records", source.File));

        var validationCount = ValidationCount(settings.Validation, conversations.Count);
        if (validationCount >= conversations.Count)
            throw new FineTuneException(context.Pipeline.Locate("stages.format.validation")
                .Error(DiagnosticCodes.NoTrainingRecords,
                $"validation {settings.Validation} takes {validationCount} of the {conversations.Count} records in " +
                $"{source.Display}, " +
                "leaving none for training; lower it (a fraction below 1 or a smaller count)"));

        var order = conversations.ToList();
        if (settings.Shuffle) new SplitMix64(unchecked((ulong)(long)settings.Seed)).Shuffle(order);
        // Validation is the tail so that, without shuffling, it is the end of the file, as people expect of a hold-out.
        var train = order.Take(order.Count - validationCount).ToList();
        var validation = order.Skip(order.Count - validationCount).ToList();

        ConversationFile.Write(Path.Combine(context.OutputDirectory, "train.jsonl"), train);
        ConversationFile.Write(Path.Combine(context.OutputDirectory, "validation.jsonl"), validation);
        File.WriteAllText(Path.Combine(context.OutputDirectory, "checks.json"), report.ToJson());

        foreach (var warning in report.Warnings)
            context.Log.Warning($"{source.Display}: {warning.Summary()}");

        context.Summary["records"] = conversations.Count;
        context.Summary["train"] = train.Count;
        context.Summary["validation"] = validation.Count;
        context.Summary["duplicates"] = report.CountOf(DataCheckCategory.DuplicateExample);
        context.Summary["empty_outputs"] = report.CountOf(DataCheckCategory.EmptyAnswer);
        if (report.Warnings.Count > 0) context.Summary["warnings"] = report.Counts(Severity.Warning);

        var summary = new SortedDictionary<string, object>(context.Summary, StringComparer.Ordinal)
        {
            ["source"] = source.Display,
            ["type"] = settings.Type,
            ["shuffle"] = settings.Shuffle,
            ["seed"] = settings.Seed,
        };
        File.WriteAllText(Path.Combine(context.OutputDirectory, "summary.json"),
            JsonSerializer.Serialize(summary, JsonText.Indented) + "\n");

        context.Log.Info($"{conversations.Count:N0} records: {train.Count:N0} train, {validation.Count:N0} validation");
    }

    /// <summary>
    /// A fraction below 1 is a share of the records, rounded to nearest, and at least one record when the share is
    /// positive and there are two records or more; 1 or more is a count.
    /// </summary>
    public static int ValidationCount(double validation, int records)
    {
        if (validation <= 0) return 0;
        if (validation >= 1) return (int)Math.Min(validation, int.MaxValue);
        var count = (int)Math.Round(records * validation, MidpointRounding.AwayFromZero);
        return count == 0 && records >= 2 ? 1 : count;
    }

    /// <summary>The data as the user named it (the fetch stage's recorded source), so findings point at their
    /// file.</summary>
    private static DataSourceName SourceName(StageContext context)
    {
        if (!context.InputEntries.TryGetValue("fetch", out var fetch)
            || fetch.Summary.GetValueOrDefault(FetchStage.SourceSummaryKey) is not string source)
            return new DataSourceName("the fetched data");
        return Uri.TryCreate(source, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? new DataSourceName(source)
            : new DataSourceName(source, context.ResolvePath(source));
    }

    private static string FetchedDataFile(StageContext context)
    {
        var folder = context.Input("fetch");
        var candidates = Directory.GetFiles(folder, "data.*").Order(StringComparer.Ordinal).ToList();
        return candidates.Count > 0
            ? candidates[0]
            : throw new FineTuneException(DiagnosticCodes.FetchOutputMissing,
                $"the fetch output {folder} holds no data.* file; run the fetch stage again", ExitCodes.StageFailed);
    }
}
