using System.Collections;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using nietras.SeparatedValues;
using Parquet.Serialization;

namespace FineTune.Core.Data;

/// <summary>
/// One record of a data file as read, before any mapping: its fields as a JSON tree. <see cref="Index"/> counts
/// records from 0 (like <c>jq '.[17]'</c>), broken ones included, so it always points at the same record;
/// <see cref="Line"/> and <see cref="Column"/> are 1-based where the file has lines (0 in parquet).
/// </summary>
internal sealed record SourceRecord(int Index, int Line, int Column, JsonNode? Value)
{
    /// <summary>Where each top-level field's value starts, where the reader knows (JSON).</summary>
    public IReadOnlyDictionary<string, (int Line, int Column)>? FieldPositions { get; init; }

    public (int Line, int Column) PositionOf(string field) =>
        FieldPositions is not null && FieldPositions.TryGetValue(field, out var position) ? position : (Line, Column);
}

/// <param name="Records">The records that could be read; broken ones are reported and left out.</param>
/// <param name="Count">Records in the file, broken ones included.</param>
/// <param name="Columns">The header (csv) or schema (parquet) column names; null for JSON, whose records each name
/// their own fields.</param>
internal sealed record RecordSet(IReadOnlyList<SourceRecord> Records, int Count, IReadOnlyList<string>? Columns);

/// <summary>
/// Reads the records of a data file, choosing the reader by extension: .json (an array of records, an object
/// holding one list of records, or JSON lines), .jsonl/.ndjson (JSON lines), .csv/.tsv (columns by header),
/// .parquet (string, list and list-of-struct columns). Problems go to the collector, each with its record and line.
/// </summary>
internal static class RecordReader
{
    /// <param name="isRecord">For a .json file holding one object: whether that object is itself a record (it has a
    /// column of the mapping) rather than a wrapper around the list of records.</param>
    public static async Task<RecordSet> ReadFileAsync(string path, DataCheckCollector problems,
        Func<JsonObject, bool> isRecord,
        CancellationToken cancellationToken = default)
    {
        var extension = Path.GetExtension(path).ToLowerInvariant();
        switch (extension)
        {
            case ".parquet": return await ReadParquetAsync(path, problems, cancellationToken);
            case ".csv" or ".tsv": return ReadSeparated(path, problems);
            case ".jsonl" or ".ndjson": return ReadJson(File.ReadAllBytes(path), problems, r => r.ReadLines());
            case ".json": return ReadJson(File.ReadAllBytes(path), problems, r => r.ReadDocument(isRecord));
        }
        // An unknown extension (a URL without one, say): parquet files start with PAR1; JSON with [ or {.
        var bytes = File.ReadAllBytes(path);
        if (bytes.AsSpan().StartsWith("PAR1"u8)) return await ReadParquetAsync(path, problems, cancellationToken);
        var first = Array.FindIndex(bytes, b => !IsWhitespace(b) && b != 0xEF && b != 0xBB && b != 0xBF);
        if (first >= 0 && bytes[first] is (byte)'[' or (byte)'{')
            return ReadJson(bytes, problems, r => r.ReadDocument(isRecord));
        problems.Report(DataCheckCategory.MalformedFile, -1,
            $"cannot tell the file type of '{Path.GetFileName(path)}' from its extension; name the data .json, " +
            $".jsonl, .csv, .tsv or .parquet");
        return new RecordSet([], 0, null);
    }

    // ---- csv / tsv ----

    private static RecordSet ReadSeparated(string path, DataCheckCollector problems)
    {
        var records = new List<SourceRecord>();
        try
        {
            // Sep detects the separator from the header (comma, semicolon, tab, pipe) and unescapes quoted cells,
            // which may span lines; its line numbers are those of the file.
            using var reader = Sep.Reader(o => o with { Unescape = true, DisableColCountCheck = true }).FromFile(path);
            var columns = reader.Header.ColNames.ToList();
            foreach (var row in reader)
            {
                var fields = new JsonObject();
                for (var i = 0; i < Math.Min(columns.Count, row.ColCount); i++)
                    fields[columns[i]] = row[i].ToString();
                records.Add(new SourceRecord(row.RowIndex - 1, row.LineNumberFrom, 1, fields));
            }
            return new RecordSet(records, records.Count, columns);
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or NotSupportedException)
        {
            problems.Report(DataCheckCategory.MalformedFile, records.Count,
                $"record {records.Count}: malformed CSV: {e.Message}");
            return new RecordSet(records, records.Count + 1, null);
        }
    }

    // ---- parquet ----

    private static async Task<RecordSet> ReadParquetAsync(string path, DataCheckCollector problems,
        CancellationToken cancellationToken)
    {
        try
        {
            await using var stream = File.OpenRead(path);
            var result = await ParquetSerializer.DeserializeUntypedAsync(stream, cancellationToken: cancellationToken);
            var columns = result.Schema.Fields.Select(f => f.Name).ToList();
            var records = new List<SourceRecord>(result.Data.Count);
            for (var i = 0; i < result.Data.Count; i++)
                records.Add(new SourceRecord(i, 0, 0, ToJson(result.Data[i])));
            return new RecordSet(records, records.Count, columns);
        }
        catch (Exception e)
            when (e is IOException or InvalidDataException or NotSupportedException or ApplicationException)
        {
            problems.Report(DataCheckCategory.MalformedFile, -1, $"cannot read the parquet file: {e.Message}");
            return new RecordSet([], 0, null);
        }
    }

    /// <summary>Parquet.Net's untyped rows (dictionaries, lists, strings as memory, numbers) as a JSON tree.</summary>
    private static JsonNode? ToJson(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        ReadOnlyMemory<char> m => JsonValue.Create(m.ToString()),
        bool b => JsonValue.Create(b),
        byte[] bytes => JsonValue.Create(Encoding.UTF8.GetString(bytes)),
        IDictionary<string, object?> map => new JsonObject(map.Select(kv => KeyValuePair.Create(kv.Key,
            ToJson(kv.Value)))),
        IEnumerable list => new JsonArray(list.Cast<object?>().Select(ToJson).ToArray()),
        double or float => Convert.ToDouble(value) is var d && double.IsFinite(d) ? JsonValue.Create(d)
            : JsonValue.Create(value.ToString()),
        IConvertible number when number.GetTypeCode() is >= TypeCode.SByte and <= TypeCode.Decimal
            => JsonValue.Create(Convert.ToDecimal(number)),
        _ => JsonValue.Create(value.ToString()),
    };

    // ---- json / json lines ----

    /// <summary>JSON is UTF-8 (RFC 8259); text that is not would fail deep inside a later stage, so the first bad
    /// byte is reported at its line and column and nothing of the file is read.</summary>
    private static RecordSet ReadJson(byte[] bytes, DataCheckCollector problems, Func<JsonRecords, RecordSet> read)
    {
        var records = new JsonRecords(bytes, problems);
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return read(records);
        var offset = 0;
        while (Rune.DecodeFromUtf8(bytes.AsSpan(offset), out _, out var consumed)
               == System.Buffers.OperationStatus.Done) offset += consumed;
        records.ReportInvalidUtf8(offset);
        return new RecordSet([], 0, null);
    }

    private sealed class JsonRecords(byte[] bytes, DataCheckCollector problems)
    {
        private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true };
        private static readonly JsonDocumentOptions DocumentOptions =
            new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };
        private static readonly string[] ListNames = ["train", "data", "records", "rows", "examples"];

        private readonly int[] _lineStarts = LineStarts(bytes);
        private readonly int _start = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        private readonly List<SourceRecord> _records = [];
        private int _count;

        private RecordSet Result() => new(_records, _count, null);

        /// <summary>A .json file: an array of records, an object wrapping one, a single record, or JSON lines after
        /// all.</summary>
        public RecordSet ReadDocument(Func<JsonObject, bool> isRecord)
        {
            var first = _start;
            while (first < bytes.Length && IsWhitespace(bytes[first])) first++;
            if (first == bytes.Length) return Result();
            if (bytes[first] == (byte)'[') return ReadArray();
            if (bytes[first] != (byte)'{')
            {
                Report(first, $"expected a JSON array of records or JSON lines (one record per line), found " +
                    $"'{(char)bytes[first]}'", DataCheckCategory.MalformedFile);
                return Result();
            }

            JsonNode? document;
            try { document = JsonNode.Parse(bytes.AsSpan(_start), documentOptions: DocumentOptions); }
            catch (JsonException) { return ReadLines(); } // more than one value: JSON lines in a .json file
            var wrapper = (JsonObject)document!;
            if (isRecord(wrapper))
            {
                var single = new Utf8JsonReader(bytes.AsSpan(_start), ReaderOptions);
                single.Read();
                ReadRecord(ref single, _start);
                return Result();
            }

            var lists = wrapper.Where(p => p.Value is JsonArray).Select(p => p.Key).ToList();
            var list = lists.Count == 1 ? lists[0] : ListNames.FirstOrDefault(lists.Contains);
            if (list is null)
            {
                Report(first, lists.Count == 0
                    ? "the JSON object holds no list of records and no field of the mapping; expected an array of " +
                        "records or an object with one list"
                    : $"the JSON object holds several lists ({string.Join(", ", lists)}); keep the records in one of " +
                        $"them, or name it train or data",
                    DataCheckCategory.MalformedFile);
                return Result();
            }
            var reader = new Utf8JsonReader(bytes.AsSpan(_start), ReaderOptions);
            reader.Read();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString();
                reader.Read();
                if (name == list)
                {
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) ReadRecord(ref reader, _start);
                    break;
                }
                reader.Skip();
            }
            return Result();
        }

        public RecordSet ReadArray()
        {
            var reader = new Utf8JsonReader(bytes.AsSpan(_start), ReaderOptions);
            try
            {
                reader.Read(); // [
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    ReadRecord(ref reader, _start);
                // Anything after the closing bracket other than whitespace is a syntax error.
                while (reader.Read()) { }
            }
            catch (JsonException e)
            {
                Syntax(e, 0, -1); // the line and column say where; the record may not have started
            }
            return Result();
        }

        public RecordSet ReadLines()
        {
            var lineStart = _start;
            while (lineStart < bytes.Length)
            {
                var end = Array.IndexOf(bytes, (byte)'\n', lineStart);
                if (end < 0) end = bytes.Length;
                var line = bytes.AsSpan(lineStart, end - lineStart);
                if (!line.Trim(" \t\r"u8).IsEmpty)
                {
                    var reader = new Utf8JsonReader(line, ReaderOptions);
                    var countBefore = _count;
                    try
                    {
                        reader.Read();
                        ReadRecord(ref reader, lineStart);
                        while (reader.Read()) { }
                    }
                    catch (JsonException e)
                    {
                        Syntax(e, LineOf(lineStart) - 1, countBefore);
                        // A broken line still counts as a record, so the indices of the records after it stay true.
                        _count = countBefore + 1;
                        if (_records.Count > 0 && _records[^1].Index == countBefore)
                            _records.RemoveAt(_records.Count - 1);
                    }
                }
                lineStart = end + 1;
            }
            return Result();
        }

        /// <summary>Reads one record starting at the reader's current token; positions are offset by <paramref
        /// name="origin"/>.</summary>
        private void ReadRecord(ref Utf8JsonReader reader, int origin)
        {
            var index = _count++;
            var (line, column) = Position(origin + (int)reader.TokenStartIndex);
            if (FirstDuplicateKey(reader) is var (duplicate, offset))
            {
                var (duplicateLine, duplicateColumn) = Position(origin + (int)offset);
                problems.Report(DataCheckCategory.MalformedFile, index,
                    $"record {index}: the key '{duplicate}' appears twice in one object; keep one of them",
                    duplicateLine, duplicateColumn);
                reader.Skip();
                return;
            }
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                _records.Add(new SourceRecord(index, line, column, JsonNode.Parse(ref reader)));
                return;
            }
            var fields = new JsonObject();
            var positions = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                reader.Read();
                positions[name] = Position(origin + (int)reader.TokenStartIndex);
                fields[name] = JsonNode.Parse(ref reader); // steps over nested objects and arrays
            }
            _records.Add(new SourceRecord(index, line, column, fields) { FieldPositions = positions });
        }

        public void ReportInvalidUtf8(int offset) =>
            Report(offset, $"the file is not valid UTF-8: byte 0x{bytes[offset]:X2} at offset {offset} does not " +
                $"start a character (save the file as UTF-8)", DataCheckCategory.MalformedFile);

        /// <summary>
        /// The first key that appears twice in one object of the value at <paramref name="reader"/> (a copy, so the
        /// caller's position stays), with its offset. JSON leaves which of the two counts undefined, and readers
        /// differ, so such a record is refused rather than read one way here and another way elsewhere.
        /// </summary>
        private static (string Name, long Offset)? FirstDuplicateKey(Utf8JsonReader reader)
        {
            if (reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray)) return null;
            var open = new Stack<HashSet<string>?>();
            open.Push(reader.TokenType == JsonTokenType.StartObject ? new HashSet<string>(StringComparer.Ordinal)
                : null);
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: open.Push(new HashSet<string>(StringComparer.Ordinal)); break;
                    case JsonTokenType.StartArray: open.Push(null); break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        open.Pop();
                        if (open.Count == 0) return null;
                        break;
                    case JsonTokenType.PropertyName:
                        var name = reader.GetString()!;
                        if (!open.Peek()!.Add(name)) return (name, reader.TokenStartIndex);
                        break;
                }
            }
            return null;
        }

        private void Syntax(JsonException e, int lineBase, int record)
        {
            var line = (int)(e.LineNumber ?? 0) + lineBase + 1;
            var column = (int)(e.BytePositionInLine ?? 0) + 1;
            // JsonException's message ends with its own position in the span it read; ours is the file's.
            var message = e.Message;
            var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
            if (cut > 0) message = message[..cut].TrimEnd();
            problems.Report(DataCheckCategory.MalformedFile, record,
                $"malformed JSON at line {line}, column {column}: {message}", line, column);
        }

        private void Report(int offset, string message, DataCheckCategory category)
        {
            var (line, column) = Position(offset);
            problems.Report(category, -1, message, line, column);
        }

        private (int Line, int Column) Position(int offset)
        {
            var line = LineOf(offset);
            var lineStart = _lineStarts[line - 1];
            return (line, Encoding.UTF8.GetCharCount(bytes, lineStart, Math.Max(0, offset - lineStart)) + 1);
        }

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
}
