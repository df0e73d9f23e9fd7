using FineTune.Core.Diagnostics;

namespace FineTune.Core.Data;

/// <summary>
/// How to name the data in messages: the source the user wrote (fetch.path or fetch.url), not the store's copy.
/// <paramref name="File"/> is the local file when there is one, so diagnostics carry a clickable file(line,col).
/// </summary>
internal sealed record DataSourceName(string Display, string? File = null)
{
    public Diagnostic Diagnostic(Severity severity, string code, string message, int line = 0, int column = 0) =>
        File is not null
            ? new Diagnostic(severity, code, message, File, line, column)
            : new Diagnostic(severity, code, $"{Display}: {message}" + (line > 0 ? $" (line {line})" : ""));
}
