namespace FineTune.Core.Diagnostics;

internal enum Severity { Error, Warning }

/// <summary>
/// One problem found in user input, printed in the canonical form that MSBuild, VS Code and CI logs make
/// clickable: <c>file(line,col): error FT0102: message</c>.
/// </summary>
internal sealed record Diagnostic(Severity Severity, string Code, string Message, string? File = null, int Line = 0,
    int Column = 0)
{
    public static Diagnostic Error(string code, string message, string? file = null, int line = 0, int column = 0)
        => new(Severity.Error, code, message, file, line, column);

    public static Diagnostic Warning(string code, string message, string? file = null, int line = 0, int column = 0)
        => new(Severity.Warning, code, message, file, line, column);

    public string Format(string? relativeTo = null)
    {
        var kind = Severity == Severity.Error ? "error" : "warning";
        if (File is null) return $"{kind} {Code}: {Message}";
        // Pseudo-files such as "<command line> --set train.lr" are shown as they are.
        var path = File.StartsWith('<') ? File : DisplayPath(File, relativeTo ?? Directory.GetCurrentDirectory());
        var location = Line > 0 ? $"({Line},{Math.Max(Column, 1)})" : "";
        return $"{path}{location}: {kind} {Code}: {Message}";
    }

    public override string ToString() => Format();

    public static string DisplayPath(string path, string relativeTo)
    {
        var full = Path.GetFullPath(path);
        var relative = Path.GetRelativePath(relativeTo, full);
        return relative.StartsWith("..", StringComparison.Ordinal) && Path.IsPathRooted(full)
            && relative.Count(c => c == '/') > 3
            ? full
            : relative;
    }
}

/// <summary>Process exit codes, documented in <c>--help</c>.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    public const int InternalError = 1;
    public const int InvalidInput = 2;
    public const int StageFailed = 3;
    public const int Cancelled = 130;
}

/// <summary>
/// A failure the user can fix: bad pipeline, bad data, bad arguments, a hash mismatch. Printed without a stack
/// trace; <see cref="ExitCode"/> says whether it is invalid input (2) or a stage that failed while running (3).
/// </summary>
internal class FineTuneException : Exception
{
    public IReadOnlyList<Diagnostic> Diagnostics { get; }
    public int ExitCode { get; }

    public FineTuneException(IReadOnlyList<Diagnostic> diagnostics, int exitCode = ExitCodes.InvalidInput)
        : base(string.Join(Environment.NewLine, diagnostics.Select(d => d.Format())))
    {
        Diagnostics = diagnostics;
        ExitCode = exitCode;
    }

    public FineTuneException(Diagnostic diagnostic, int exitCode = ExitCodes.InvalidInput)
        : this(new[] { diagnostic }, exitCode) { }

    /// <summary>A user-facing error without a file position.</summary>
    public FineTuneException(string code, string message, int exitCode = ExitCodes.InvalidInput)
        : this(Diagnostic.Error(code, message), exitCode) { }
}
