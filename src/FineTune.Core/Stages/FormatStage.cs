using System.Text.Json;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// Turns the fetched records into conversations, shuffles them with a seed and splits off a validation set.
/// Writes train.jsonl and validation.jsonl (<see cref="ConversationFile"/>) and summary.json.
/// </summary>
/// <remarks>
/// An alpaca record becomes: a system message (the record's own <c>system</c>, else <c>system_prompt</c>, else none),
/// a user message of <c>instruction + input</c> joined with nothing in between, and an assistant message of
/// <c>output</c>. The plain join is what the reference tutorial (self-llm, huanhuan) does; for its data, where
/// input is always empty, it is simply the instruction. Datasets whose input needs a separator should put it in
/// the data.
/// </remarks>
public sealed class FormatStage : Stage
{
    public override string Name => "format";

    public override int ImplementationVersion => 1;

    public override IReadOnlyList<string> DependsOn => ["fetch"];

    public override object SelectSettings(PipelineDefinition pipeline) => pipeline.Stages.Format;

    public override Task RunAsync(StageContext context, CancellationToken cancellationToken)
    {
        var settings = (FormatSettings)SelectSettings(context.Pipeline);
        if (settings.Type != "alpaca")
            throw new FineTuneException(context.Pipeline.Locate("stages.format.type")
                .Error("FT0205", $"format type '{settings.Type}' is not supported; use alpaca"));

        var source = SourceName(context);
        var records = AlpacaReader.ReadFile(FetchedDataFile(context), source);
        if (records.Count == 0)
            throw new FineTuneException(Diagnostic.Error("FT0203", $"{source.Display} holds no records", source.File));
        cancellationToken.ThrowIfCancellationRequested();

        var conversations = records.Select(r => ToConversation(r, settings.SystemPrompt)).ToList();

        var validationCount = ValidationCount(settings.Validation, conversations.Count);
        if (validationCount >= conversations.Count)
            throw new FineTuneException(context.Pipeline.Locate("stages.format.validation").Error("FT0203",
                $"validation {settings.Validation} takes {validationCount} of the {conversations.Count} records in {source.Display}, " +
                "leaving none for training; lower it (a fraction below 1 or a smaller count)"));

        var order = conversations;
        if (settings.Shuffle)
        {
            order = [.. conversations];
            new SplitMix64(unchecked((ulong)(long)settings.Seed)).Shuffle(order);
        }
        // Validation is the tail so that, without shuffling, it is the end of the file, as people expect of a hold-out.
        var train = order.Take(order.Count - validationCount).ToList();
        var validation = order.Skip(order.Count - validationCount).ToList();

        ConversationFile.Write(Path.Combine(context.OutputDirectory, "train.jsonl"), train);
        ConversationFile.Write(Path.Combine(context.OutputDirectory, "validation.jsonl"), validation);

        var duplicates = conversations.Count - conversations
            .Select(c => JsonSerializer.Serialize(c.Messages, ConversationFile.Json))
            .Distinct(StringComparer.Ordinal)
            .Count();
        var emptyOutputs = records.Where(r => string.IsNullOrWhiteSpace(r.Output)).Select(r => r.Index).ToList();
        if (emptyOutputs.Count > 0)
            context.Log.Warning($"{source.Display}: {emptyOutputs.Count} record(s) have an empty output " +
                $"(record {string.Join(", ", emptyOutputs.Take(10))}{(emptyOutputs.Count > 10 ? ", ..." : "")}); " +
                "the model learns to answer them with nothing");
        if (duplicates > 0)
            context.Log.Info($"{source.Display}: {duplicates} record(s) repeat an earlier one exactly");

        context.Summary["records"] = conversations.Count;
        context.Summary["train"] = train.Count;
        context.Summary["validation"] = validation.Count;
        context.Summary["duplicates"] = duplicates;
        context.Summary["empty_outputs"] = emptyOutputs.Count;

        var summary = new SortedDictionary<string, object>(context.Summary, StringComparer.Ordinal)
        {
            ["source"] = source.Display,
            ["type"] = settings.Type,
            ["shuffle"] = settings.Shuffle,
            ["seed"] = settings.Seed,
        };
        File.WriteAllText(Path.Combine(context.OutputDirectory, "summary.json"),
            JsonSerializer.Serialize(summary, new JsonSerializerOptions(ConversationFile.Json) { WriteIndented = true }) + "\n");

        context.Log.Info($"{conversations.Count:N0} records: {train.Count:N0} train, {validation.Count:N0} validation");
        return Task.CompletedTask;
    }

    public static Conversation ToConversation(AlpacaRecord record, string? systemPrompt)
    {
        var messages = new List<ChatMessage>(3);
        // A blank system field is treated as absent: datasets often carry "system": "" on every record.
        var system = string.IsNullOrWhiteSpace(record.System) ? systemPrompt : record.System;
        if (!string.IsNullOrEmpty(system)) messages.Add(new ChatMessage("system", system));
        messages.Add(new ChatMessage("user", record.Instruction + (record.Input ?? "")));
        messages.Add(new ChatMessage("assistant", record.Output));
        return new Conversation(messages, record.Index);
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

    private static DataSourceName SourceName(StageContext context)
    {
        var fetch = context.Pipeline.Stages.Fetch;
        if (fetch.Path is not null) return new DataSourceName(fetch.Path, context.ResolvePath(fetch.Path));
        return new DataSourceName(fetch.Url ?? "the fetched data");
    }

    private static string FetchedDataFile(StageContext context)
    {
        var folder = context.Input("fetch");
        var candidates = Directory.GetFiles(folder, "data.*").Order(StringComparer.Ordinal).ToList();
        return candidates.Count > 0
            ? candidates[0]
            : throw new FineTuneException("FT0204", $"the fetch output {folder} holds no data.* file; run the fetch stage again", ExitCodes.StageFailed);
    }
}
