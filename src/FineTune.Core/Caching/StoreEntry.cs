using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Caching;

internal sealed record FileRecord(
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("size")] long Size);

/// <summary>
/// What the store knows about one committed stage output (<c>entry.json</c> beside <c>output/</c>). The lock file
/// entry for a stage is derived from it, so a stage restored from the cache is recorded exactly as when it ran.
/// </summary>
internal sealed class StoreEntry
{
    [JsonPropertyName("stage")] public required string Stage { get; init; }
    [JsonPropertyName("key")] public required string Key { get; init; }
    [JsonPropertyName("implementation")] public required int Implementation { get; init; }
    [JsonPropertyName("settings")] public required SortedDictionary<string, object?> Settings { get; init; }
    [JsonPropertyName("inputs")] public required SortedDictionary<string, FileRecord> Inputs { get; init; }
    [JsonPropertyName("outputs")] public required SortedDictionary<string, FileRecord> Outputs { get; init; }
    [JsonPropertyName("output_hash")] public required string OutputHash { get; init; }
    [JsonPropertyName("environment")] public required SortedDictionary<string, string> Environment { get; init; }
    [JsonPropertyName("summary")] public required SortedDictionary<string, object?> Summary { get; init; }
    [JsonPropertyName("started_utc")] public required DateTime StartedUtc { get; init; }
    [JsonPropertyName("duration_s")] public required double DurationSeconds { get; init; }

    /// <summary>Figures that vary between identical runs (see StageContext.Timings); never in the lock file.</summary>
    [JsonPropertyName("timings")]
    public SortedDictionary<string, object?> Timings { get; init; } = new(StringComparer.Ordinal);

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new PlainValueConverter() },
    };

    /// <summary>Reads settings/summary values back as plain values (string, long, double, bool, list,
    /// dictionary).</summary>
    private sealed class PlainValueConverter : JsonConverter<object>
    {
        public override object? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => ReadValue(ref reader);

        private static object? ReadValue(ref Utf8JsonReader reader)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.Null: return null;
                case JsonTokenType.True: return true;
                case JsonTokenType.False: return false;
                case JsonTokenType.String: return reader.GetString();
                case JsonTokenType.Number:
                    return reader.TryGetInt64(out var l) && !HasFraction(reader.ValueSpan) ? l : reader.GetDouble();
                case JsonTokenType.StartArray:
                    var list = new List<object?>();
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray) list.Add(ReadValue(ref reader));
                    return list;
                case JsonTokenType.StartObject:
                    var map = new SortedDictionary<string, object?>(StringComparer.Ordinal);
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                    {
                        var name = reader.GetString()!;
                        reader.Read();
                        map[name] = ReadValue(ref reader);
                    }
                    return map;
                default: throw new JsonException($"unexpected {reader.TokenType}");
            }
        }

        private static bool HasFraction(ReadOnlySpan<byte> number)
            => number.IndexOfAny("."u8) >= 0 || number.IndexOfAny("eE"u8) >= 0;

        public override void Write(Utf8JsonWriter writer, object value, JsonSerializerOptions options)
        {
            if (value is double d) { writer.WriteRawValue(d.ToString("R",
                System.Globalization.CultureInfo.InvariantCulture)); return; }
            JsonSerializer.Serialize(writer, value, value.GetType(), options);
        }
    }
}
