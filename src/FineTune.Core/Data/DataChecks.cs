using System.Text.Json;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Data;

/// <param name="Conversations">The records that became conversations, in file order.</param>
/// <param name="Report">Everything found on the way; the data is usable only when it has no errors.</param>
internal sealed record DataCheckResult(IReadOnlyList<Conversation> Conversations, DataCheckReport Report);

/// <summary>
/// Reads a data file, maps its records by the format settings and checks them: the format stage's whole front half,
/// and what <c>validate</c> runs on its own. Never throws for bad data; the report says what is wrong.
/// </summary>
internal static class DataChecks
{
    /// <summary>An answer with fewer non-space characters than this, or without a letter or digit, is "very
    /// short".</summary>
    public const int ShortAnswerCharacters = 2;

    public static async Task<DataCheckResult> RunAsync(string dataFile, DataSourceName source, FormatSettings settings,
        CancellationToken cancellationToken = default)
    {
        var problems = new DataCheckCollector(source);
        var mapper = new RecordMapper(settings);
        var records = await RecordReader.ReadFileAsync(dataFile, problems, mapper.LooksLikeRecord, cancellationToken);

        var mapped = new List<(SourceRecord Record, Conversation Conversation)>(records.Records.Count);
        if (mapper.CheckColumns(records.Columns, problems))
        {
            foreach (var record in records.Records)
                if (mapper.Map(record, problems) is { } conversation) mapped.Add((record, conversation));
        }
        cancellationToken.ThrowIfCancellationRequested();
        Check(mapped, problems);
        return new DataCheckResult(mapped.Select(m => m.Conversation).ToList(), problems.Build(records.Count));
    }

    /// <summary>The checks on conversations: empty examples, no assistant message, empty or very short answers, weights
    /// that train nothing, duplicates.</summary>
    public static void Check(IReadOnlyList<(SourceRecord Record, Conversation Conversation)> examples,
        DataCheckCollector problems)
    {
        var firstSeen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (record, conversation) in examples)
        {
            void Report(DataCheckCategory category, string message) =>
                problems.Report(category, record.Index, $"record {record.Index}: {message}", record.Line,
                    record.Column);

            if (conversation.Text is { } text)
            {
                if (string.IsNullOrWhiteSpace(text)) Report(DataCheckCategory.EmptyExample, "the text is empty");
            }
            else if (conversation.Messages.All(m => string.IsNullOrWhiteSpace(m.Content)))
                Report(DataCheckCategory.EmptyExample, "every message is empty");
            else
            {
                var answers = conversation.Messages.Where(m => m.Role == "assistant").ToList();
                if (answers.Count == 0)
                    Report(DataCheckCategory.NoAssistantMessage,
                        $"no assistant message (roles: " +
                        $"{string.Join(", ", conversation.Messages.Select(m => m.Role))})");
                else if (answers.All(m => m.Weight == 0))
                    Report(DataCheckCategory.NothingTrained, "every assistant message has weight 0");
                if (answers.FindIndex(m => string.IsNullOrWhiteSpace(m.Content)) is var empty and >= 0)
                    Report(DataCheckCategory.EmptyAnswer, $"assistant answer {empty} is empty");
                else if (answers.FindIndex(m => IsVeryShort(m.Content)) is var tiny and >= 0)
                    Report(DataCheckCategory.ShortAnswer, $"assistant answer {tiny} is very short: " +
                        $"\"{answers[tiny].Content.Trim()}\"");
            }

            // Same messages (and weights) or same text: the source index does not make two records different.
            var key = conversation.Text ?? JsonSerializer.Serialize(conversation.Messages, ConversationFile.Json);
            if (firstSeen.TryGetValue(key, out var first))
                Report(DataCheckCategory.DuplicateExample, $"repeats record {first}");
            else firstSeen[key] = record.Index;
        }
    }

    public static bool IsVeryShort(string answer)
    {
        var visible = answer.Count(c => !char.IsWhiteSpace(c));
        return visible > 0 && (visible < ShortAnswerCharacters || !answer.Any(char.IsLetterOrDigit));
    }
}
