using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace FineTune.Cli.Commands.Serve;

/// <summary>A request the server refuses, answered with OpenAI's error object and an HTTP status.</summary>
internal sealed class OpenAiError(int status, string message, string type, string? param = null,
    string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public static OpenAiError Invalid(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    /// <summary>{"error": {"message", "type", "param", "code"}}, as the OpenAI API answers errors.</summary>
    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message,
            ["type"] = type,
            ["param"] = param,
            ["code"] = code,
        },
    };

    /// <summary>An argument the model refused (out of range, or too long for its context), as a 400.</summary>
    public static OpenAiError FromArgument(ArgumentException e)
    {
        // ArgumentException appends " (Parameter 'x')" and the actual value; the param field says that already.
        var message = e.Message;
        var cut = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
        if (cut > 0) message = message[..cut];
        var code = message.Contains("maximum context length", StringComparison.Ordinal)
            ? "context_length_exceeded" : null;
        return Invalid(message, e.ParamName, code);
    }
}
