using System.Text;
using System.Text.Json;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Data;

/// <summary>One alpaca record. <see cref="Index"/> counts records from 0 (like <c>jq '.[17]'</c>); <see cref="Line"/> is 1-based.</summary>
public sealed record AlpacaRecord(int Index, int Line, string Instruction, string? Input, string Output, string? System);

/// <summary>
/// How to name the data in messages: the source the user wrote (fetch.path or fetch.url), not the store's copy.
/// <paramref name="File"/> is the local file when there is one, so diagnostics carry a clickable file(line,col).
/// </summary>
public sealed record DataSourceName(string Display, string? File = null);

/// <summary>
/// Reads alpaca records from a JSON array or JSON lines, checking every record and reporting all problems at once
/// (the first <see cref="MaxReported"/>, then a count), each with its record index, field and position.
/// </summary>
public static class AlpacaReader
{
    public const int MaxReported = 20;

    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    public static IReadOnlyList<AlpacaRecord> ReadFile(string path, DataSourceName source) => Read(File.ReadAllBytes(path), source);

    public static IReadOnlyList<AlpacaRecord> Read(byte[] bytes, DataSourceName source)
    {
        var reader = new Reader(bytes, source);
        reader.ReadAll();
        if (reader.ProblemCount > 0)
        {
            var reported = reader.Problems.ToList();
            if (reader.ProblemCount > reported.Count)
                reported.Add(reader.Diagnostic(0, 0, $"... and {reader.ProblemCount - reported.Count} more problems"));
            throw new FineTuneException(reported, ExitCodes.InvalidInput);
        }
        return reader.Records;
    }

    private sealed class Reader(byte[] bytes, DataSourceName source)
    {
        private readonly int[] _lineStarts = LineStarts(bytes);

        public List<AlpacaRecord> Records { get; } = [];
        public List<Diagnostic> Problems { get; } = [];
        public int ProblemCount { get; private set; }

        public void ReadAll()
        {
            var start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
            var first = start;
            while (first < bytes.Length && IsWhitespace(bytes[first])) first++;
            if (first == bytes.Length) return;

            if (bytes[first] == (byte)'[') ReadArray(start);
            else if (bytes[first] == (byte)'{') ReadLines(start);
            else Report(first, $"expected a JSON array of records or JSON lines (one record per line), found '{(char)bytes[first]}'", "FT0201");
        }

        private void ReadArray(int start)
        {
            var reader = new Utf8JsonReader(bytes.AsSpan(start), ReaderOptions);
            try
            {
                reader.Read(); // [
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    ReadRecord(ref reader, start);
                // Anything after the closing bracket other than whitespace is a syntax error.
                while (reader.Read()) { }
            }
            catch (JsonException e)
            {
                Syntax(e, 0);
            }
        }

        private void ReadLines(int start)
        {
            var lineStart = start;
            for (var lineIndex = 0; lineStart < bytes.Length; lineIndex++)
            {
                var end = Array.IndexOf(bytes, (byte)'\n', lineStart);
                if (end < 0) end = bytes.Length;
                var line = bytes.AsSpan(lineStart, end - lineStart);
                if (!line.Trim(" \t\r"u8).IsEmpty)
                {
                    var reader = new Utf8JsonReader(line, ReaderOptions);
                    var recordsBefore = Records.Count + RejectedRecords;
                    try
                    {
                        reader.Read();
                        ReadRecord(ref reader, lineStart);
                        while (reader.Read()) { }
                    }
                    catch (JsonException e)
                    {
                        Syntax(e, LineOf(lineStart) - 1);
                        // A broken line still counts as a record, so the indices of the records after it stay true.
                        if (Records.Count + RejectedRecords == recordsBefore) RejectedRecords++;
                    }
                }
                lineStart = end + 1;
            }
        }

        /// <summary>Reads one record starting at the reader's current token; positions are offset by <paramref name="origin"/>.</summary>
        private void ReadRecord(ref Utf8JsonReader reader, int origin)
        {
            var index = Records.Count + RejectedRecords;
            var recordOffset = origin + (int)reader.TokenStartIndex;
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                Report(recordOffset, $"record {index}: must be an object with 'instruction' and 'output', found {KindOf(reader.TokenType)}");
                reader.Skip();
                RejectedRecords++;
                return;
            }

            var fields = new Dictionary<string, (JsonTokenType Kind, string? Text, int Offset)>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                reader.Read();
                var offset = origin + (int)reader.TokenStartIndex;
                var text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
                fields[name] = (reader.TokenType, text, offset);
                reader.Skip(); // steps over nested objects and arrays; a no-op on plain values
            }

            var problemsBefore = ProblemCount;
            var instruction = Field(fields, "instruction", required: true, index, recordOffset);
            var input = Field(fields, "input", required: false, index, recordOffset);
            var output = Field(fields, "output", required: true, index, recordOffset);
            var system = Field(fields, "system", required: false, index, recordOffset);
            if (ProblemCount > problemsBefore)
            {
                RejectedRecords++;
                return;
            }
            Records.Add(new AlpacaRecord(index, LineOf(recordOffset), instruction!, input, output!, system));
        }

        private int RejectedRecords { get; set; }

        private string? Field(Dictionary<string, (JsonTokenType Kind, string? Text, int Offset)> fields, string name, bool required, int index, int recordOffset)
        {
            if (!fields.TryGetValue(name, out var field) || (!required && field.Kind == JsonTokenType.Null))
            {
                if (required) Report(recordOffset, $"record {index}: field '{name}' is missing");
                return null;
            }
            if (field.Kind != JsonTokenType.String)
            {
                Report(field.Offset, $"record {index}: field '{name}' must be a string, found {KindOf(field.Kind)}");
                return null;
            }
            return field.Text;
        }

        private void Syntax(JsonException e, int lineBase)
        {
            var line = (int)(e.LineNumber ?? 0) + lineBase + 1;
            var column = (int)(e.BytePositionInLine ?? 0) + 1;
            // JsonException's message ends with its own position in the span it read; ours is the file's.
            var message = e.Message;
            var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0) message = message[..cut].TrimEnd();
            Add(Diagnostic(line, column, $"malformed JSON at line {line}, column {column}: {message}", "FT0201"));
        }

        private void Report(int offset, string message, string code = "FT0202")
        {
            var line = LineOf(offset);
            var lineStart = _lineStarts[line - 1];
            var column = Encoding.UTF8.GetCharCount(bytes, lineStart, Math.Max(0, offset - lineStart)) + 1;
            Add(Diagnostic(line, column, message, code));
        }

        private void Add(Diagnostic diagnostic)
        {
            ProblemCount++;
            if (Problems.Count < MaxReported) Problems.Add(diagnostic);
        }

        public Diagnostic Diagnostic(int line, int column, string message, string code = "FT0202") =>
            source.File is { } file
                ? Diagnostics.Diagnostic.Error(code, message, file, line, column)
                : Diagnostics.Diagnostic.Error(code, $"{source.Display}: {message}" + (line > 0 ? $" (line {line})" : ""));

        private int LineOf(int offset)
        {
            var found = Array.BinarySearch(_lineStarts, offset);
            return (found >= 0 ? found : ~found - 1) + 1;
        }

        private static int[] LineStarts(byte[] bytes)
        {
            var starts = new List<int> { 0 };
            for (var i = 0; i < bytes.Length; i++)
                if (bytes[i] == (byte)'\n') starts.Add(i + 1);
            return [.. starts];
        }
    }

    private static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n';

    private static string KindOf(JsonTokenType token) => token switch
    {
        JsonTokenType.String => "string",
        JsonTokenType.Number => "number",
        JsonTokenType.True or JsonTokenType.False => "boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.StartObject => "object",
        JsonTokenType.StartArray => "array",
        _ => token.ToString(),
    };
}
