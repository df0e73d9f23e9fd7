using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Inference;
using CoreChatMessage = FineTune.Core.Data.ChatMessage;

namespace FineTune.Cli.Commands.Serve;

/// <summary>
/// The fields of OpenAI's chat and completion requests that this server honours, read from the JSON body with
/// the API's names; a field of the wrong type is a 400 naming it. Fields it does not know are ignored, as
/// OpenAI-compatible servers do.
/// </summary>
internal sealed record OpenAiRequest(
    string Model,
    IReadOnlyList<CoreChatMessage>? Messages,
    string? Prompt,
    SamplingSettings Sampling,
    bool Stream,
    bool IncludeUsage)
{
    /// <summary>OpenAI's default max_tokens for /v1/completions.</summary>
    public const int CompletionDefaultMaxTokens = 16;

    public static async Task<JsonObject> ReadBodyAsync(Stream body, CancellationToken cancellationToken)
    {
        JsonNode? node;
        try { node = await JsonNode.ParseAsync(body, cancellationToken: cancellationToken); }
        catch (JsonException e)
        {
            throw OpenAiError.Invalid($"The request body is not valid JSON: {e.Message}");
        }
        return node as JsonObject ?? throw OpenAiError.Invalid("The request body must be a JSON object.");
    }

    public static OpenAiRequest ParseChat(JsonObject body)
    {
        var messages = body["messages"] as JsonArray
            ?? throw OpenAiError.Invalid("'messages' is required: an array of {role, content} objects.", "messages");
        var conversation = new List<CoreChatMessage>();
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i] as JsonObject
                ?? throw OpenAiError.Invalid($"messages[{i}] must be an object.", $"messages[{i}]");
            var role = String(message, "role", $"messages[{i}].role")
                ?? throw OpenAiError.Invalid($"messages[{i}].role is required.", $"messages[{i}].role");
            conversation.Add(new CoreChatMessage(role, Content(message["content"], $"messages[{i}].content")));
        }
        if (conversation.Count == 0) throw OpenAiError.Invalid("'messages' must not be empty.", "messages");
        var maxTokens = Int(body, "max_completion_tokens") ?? Int(body, "max_tokens");
        return Common(body, maxTokens) with { Messages = conversation };
    }

    public static OpenAiRequest ParseCompletion(JsonObject body)
    {
        var prompt = body["prompt"] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray { Count: 1 } a when a[0] is JsonValue v && v.TryGetValue<string>(out var s) => s,
            null => throw OpenAiError.Invalid("'prompt' is required.", "prompt"),
            _ => throw OpenAiError.Invalid("'prompt' must be a string (or an array of one string).", "prompt"),
        };
        return Common(body, Int(body, "max_tokens") ?? CompletionDefaultMaxTokens) with { Prompt = prompt };
    }

    private static OpenAiRequest Common(JsonObject body, int? maxTokens)
    {
        var model = String(body, "model", "model")
            ?? throw OpenAiError.Invalid("'model' is required (GET /v1/models lists it).", "model");
        if (Int(body, "n") is { } n && n != 1)
            throw OpenAiError.Invalid("Only n = 1 is supported.", "n");
        var stop = body["stop"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var s) => [s],
            JsonArray a when a.All(x => x is JsonValue v && v.TryGetValue<string>(out _)) =>
                a.Select(x => x!.GetValue<string>()).ToList(),
            _ => throw OpenAiError.Invalid("'stop' must be a string or an array of strings.", "stop"),
        };
        if (stop is { Count: > 4 }) throw OpenAiError.Invalid("'stop' takes at most 4 sequences.", "stop");
        var sampling = new SamplingSettings(maxTokens, Double(body, "temperature"), Double(body, "top_p"),
            Long(body, "seed"), stop);
        var stream = Bool(body, "stream") ?? false;
        var includeUsage = body["stream_options"] is JsonObject options && (Bool(options, "include_usage") ?? false);
        return new OpenAiRequest(model, null, null, sampling, stream, includeUsage);
    }

    /// <summary>A message's content: a string, or an array of parts of which the text ones are joined.</summary>
    private static string Content(JsonNode? node, string name) => node switch
    {
        null => "",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonArray parts => string.Concat(parts.Select((part, i) => part is JsonObject o
            && String(o, "type", $"{name}[{i}].type") is "text"
                ? String(o, "text", $"{name}[{i}].text") ?? ""
                : throw OpenAiError.Invalid($"{name}[{i}]: only text parts are supported.", name))),
        _ => throw OpenAiError.Invalid($"{name} must be a string or an array of text parts.", name),
    };

    private static string? String(JsonObject o, string key, string name) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => throw OpenAiError.Invalid($"'{name}' must be a string.", name),
    };

    private static bool? Bool(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        _ => throw OpenAiError.Invalid($"'{key}' must be true or false.", key),
    };

    private static double? Double(JsonObject o, string key) => o[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        _ => throw OpenAiError.Invalid($"'{key}' must be a number.", key),
    };

    private static long? Long(JsonObject o, string key) => Double(o, key) switch
    {
        null => null,
        var d when d == Math.Floor(d.Value) && Math.Abs(d.Value) < 9e15 => (long)d.Value,
        _ => throw OpenAiError.Invalid($"'{key}' must be an integer.", key),
    };

    private static int? Int(JsonObject o, string key) => Long(o, key) switch
    {
        null => null,
        var l when l is >= int.MinValue and <= int.MaxValue => (int)l.Value,
        _ => throw OpenAiError.Invalid($"'{key}' is out of range.", key),
    };
}
