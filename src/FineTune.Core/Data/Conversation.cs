using FineTune.Core;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Data;

/// <summary>
/// One message. <see cref="Weight"/> is OpenAI's per-message weight on assistant messages: 0 = do not train on this
/// answer, 1 = train; null (the usual case) = the stage's default. It is written only when set, so files of
/// conversations without weights stay as they were.
/// </summary>
internal sealed record ChatMessage(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string Content,
    [property: JsonPropertyName("weight"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    int? Weight = null);

/// <summary>
/// One training example; <see cref="SourceIndex"/> is the record's index in the input file. A chat example has
/// <see cref="Messages"/>; a plain-text example for continued pre-training has <see cref="Text"/> and no messages.
/// </summary>
internal sealed record Conversation(
    [property: JsonPropertyName("messages")] IReadOnlyList<ChatMessage> Messages,
    [property: JsonPropertyName("source_index")] int SourceIndex,
    [property: JsonPropertyName("text"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    string? Text = null);

/// <summary>Conversations as JSON lines: the format stage's output and the tokenize stage's input.</summary>
internal static class ConversationFile
{
    /// <summary>One conversation per line, CJK left readable in the files users open.</summary>
    public static JsonSerializerOptions Json => JsonText.Compact;

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
