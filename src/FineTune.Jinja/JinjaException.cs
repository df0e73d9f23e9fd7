namespace FineTune.Jinja;

/// <summary>
/// A template that cannot be parsed or rendered. <see cref="Exception.Message"/> is the bare message; the position
/// is kept apart so that callers can report it in their own format.
/// </summary>
public sealed class JinjaException(JinjaErrorKind kind, string message, string origin, int line, int column)
    : Exception(message)
{
    public JinjaErrorKind Kind { get; } = kind;

    /// <summary>The origin given to <see cref="JinjaTemplate.Parse"/> (a file, or a name).</summary>
    public string Origin { get; } = origin;

    /// <summary>1-based line in the template, line breaks normalised as jinja2 does.</summary>
    public int Line { get; } = line;

    /// <summary>1-based column in the template.</summary>
    public int Column { get; } = column;
}
