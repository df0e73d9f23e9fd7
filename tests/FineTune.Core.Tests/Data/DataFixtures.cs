using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using FineTune.Core.Data;
using FineTune.Core.Pipeline;
using Parquet.Serialization;

namespace FineTune.Core.Tests.Data;

// Typed rows so that Parquet.Net writes real string, list and list-of-struct columns, as Hugging Face datasets have.
public sealed class AlpacaRow
{
    [JsonPropertyName("instruction")] public string? Instruction { get; set; }
    [JsonPropertyName("input")] public string? Input { get; set; }
    [JsonPropertyName("output")] public string? Output { get; set; }
    [JsonPropertyName("system")] public string? System { get; set; }
    [JsonPropertyName("history")] public List<List<string>>? History { get; set; }
}

public sealed class ShareGptTurn
{
    [JsonPropertyName("from")] public string? From { get; set; }
    [JsonPropertyName("value")] public string? Value { get; set; }
}

public sealed class ShareGptRow
{
    [JsonPropertyName("conversations")] public List<ShareGptTurn> Conversations { get; set; } = [];
    [JsonPropertyName("system")] public string? System { get; set; }
}

public sealed class OpenAiMessage
{
    [JsonPropertyName("role")] public string? Role { get; set; }
    [JsonPropertyName("content")] public string? Content { get; set; }
    [JsonPropertyName("weight")] public int? Weight { get; set; }
}

public sealed class OpenAiRow
{
    [JsonPropertyName("messages")] public List<OpenAiMessage> Messages { get; set; } = [];
}

public sealed class TextRow
{
    [JsonPropertyName("text")] public string? Text { get; set; }
}

/// <summary>Writes the same rows as .json, .jsonl, .csv (list columns as JSON text) or .parquet.</summary>
internal static class DataFixtures
{
    public static readonly string[] Extensions = [".json", ".jsonl", ".csv", ".parquet"];

    // Unset fields are left out of JSON as datasets do; Parquet.Net would drop a [JsonIgnore]d column altogether.
    private static readonly JsonSerializerOptions Json = new()
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static async Task<string> WriteAsync<T>(string folder, string name, string extension, IReadOnlyList<T> rows)
    {
        var path = Path.Combine(folder, name + extension);
        switch (extension)
        {
            case ".json":
                await File.WriteAllTextAsync(path, JsonSerializer.Serialize(rows, new JsonSerializerOptions(Json) { WriteIndented = true }));
                break;
            case ".jsonl":
                await File.WriteAllLinesAsync(path, rows.Select(r => JsonSerializer.Serialize(r, Json)));
                break;
            case ".csv":
                await File.WriteAllTextAsync(path, Csv(rows), new UTF8Encoding(false));
                break;
            case ".parquet":
                await using (var stream = File.Create(path)) await ParquetSerializer.SerializeAsync(rows, stream);
                break;
            default: throw new ArgumentException(extension);
        }
        return path;
    }

    /// <summary>Every cell quoted (so commas, quotes and newlines survive); lists and objects as JSON text.</summary>
    private static string Csv<T>(IReadOnlyList<T> rows)
    {
        var objects = rows.Select(r => JsonSerializer.SerializeToNode(r, Json)!.AsObject()).ToList();
        var columns = objects.SelectMany(o => o.Select(p => p.Key)).Distinct().ToList();
        static string Quote(string s) => "\"" + s.Replace("\"", "\"\"") + "\"";
        var text = new StringBuilder(string.Join(",", columns.Select(Quote))).Append('\n');
        foreach (var o in objects)
            text.Append(string.Join(",", columns.Select(c => o[c] switch
            {
                null => "",
                JsonValue v when v.TryGetValue<string>(out var s) => Quote(s),
                var node => Quote(node.ToJsonString(Json)),
            }))).Append('\n');
        return text.ToString();
    }

    public static Task<DataCheckResult> CheckAsync(string path, FormatSettings settings) =>
        DataChecks.RunAsync(path, new DataSourceName(Path.GetFileName(path), path), settings);

    public static FormatSettings Settings(string type, Action<FormatSettings>? configure = null)
    {
        var settings = new FormatSettings { Type = type };
        configure?.Invoke(settings);
        return settings;
    }
}
