using System.Text;

namespace FineTune.Jinja;

/// <summary>
/// The template text as jinja2 sees it (line breaks normalised to '\n', one trailing line break dropped, as with
/// keep_trailing_newline=False), plus mapping from offsets to 1-based line/column for diagnostics.
/// </summary>
internal sealed class SourceText
{
    public string Text { get; }
    public string Origin { get; }
    private readonly List<int> _lineStarts = [0];

    public SourceText(string source, string origin)
    {
        Text = Normalize(source);
        Origin = origin;
        for (var i = 0; i < Text.Length; i++)
            if (Text[i] == '\n') _lineStarts.Add(i + 1);
    }

    /// <summary>jinja2 splits on \r\n, \r and \n, drops a final empty line and joins with '\n'.</summary>
    private static string Normalize(string source)
    {
        var text = new StringBuilder(source.Length);
        for (var i = 0; i < source.Length; i++)
        {
            var c = source[i];
            if (c == '\r' && i + 1 < source.Length && source[i + 1] == '\n') i++;
            text.Append(IsLineBreak(c) ? '\n' : c);
        }
        if (text.Length > 0 && text[^1] == '\n') text.Length--;
        return text.ToString();
    }

    private static bool IsLineBreak(char c) => c is '\n' or '\r';

    public (int Line, int Column) Position(int offset)
    {
        var line = _lineStarts.BinarySearch(offset);
        if (line < 0) line = ~line - 1;
        return (line + 1, offset - _lineStarts[line] + 1);
    }

    public JinjaException Error(JinjaErrorKind kind, string message, int offset)
    {
        var (line, column) = Position(Math.Clamp(offset, 0, Text.Length));
        return new JinjaException(kind, message, Origin, line, column);
    }
}

/// <summary>A runtime failure inside a value operation; the evaluator adds the template position.</summary>
internal sealed class TemplateRuntimeException(string message) : Exception(message);
