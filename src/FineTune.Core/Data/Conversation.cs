using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Data;

public sealed record ChatMessage(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content);

/// <summary>One training example as a conversation; <see cref="SourceIndex"/> is the record's index in the input file.</summary>
public sealed record Conversation(
    [property: JsonPropertyName("messages")] IReadOnlyList<ChatMessage> Messages,
    [property: JsonPropertyName("source_index")] int SourceIndex);

/// <summary>Conversations as JSON lines: the format stage's output and the tokenize stage's input.</summary>
public static class ConversationFile
{
    public static readonly JsonSerializerOptions Json = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // keep CJK readable in the files users open
        WriteIndented = false,
    };

    public static void Write(string path, IEnumerable<Conversation> conversations)
    {
        using var writer = new StreamWriter(path, false, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };
        foreach (var c in conversations) writer.WriteLine(JsonSerializer.Serialize(c, Json));
    }

    public static IEnumerable<Conversation> Read(string path)
    {
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (line.Length == 0) continue;
            yield return JsonSerializer.Deserialize<Conversation>(line, Json)
                ?? throw new InvalidDataException($"{path}({lineNumber}): empty conversation");
        }
    }
}
