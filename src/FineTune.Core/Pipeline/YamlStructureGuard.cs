using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace FineTune.Core.Pipeline;

/// <summary>
/// Finds what pipeline and lock files refuse before any tree is built: anchors and aliases (resolving them lets a
/// few lines expand without limit, "billion laughs", and <c>&amp;a [*a]</c> recurses forever) and nesting deeper
/// than <see cref="MaxDepth"/> (a deep enough file overflows the stack of any recursive reader).
/// </summary>
internal static class YamlStructureGuard
{
    /// <summary>The deepest nesting either file needs (lock: stages, stage, settings, nested settings; pipeline:
    /// stages, stage, prompts, messages), with room to spare.</summary>
    public const int MaxDepth = 16;

    /// <summary>The first refused construct with its 1-based position, or null. Syntax errors are left to the
    /// reader that follows, which reports them with its own wording.</summary>
    public static (string Problem, int Line, int Column)? FindRefused(string text)
    {
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        try
        {
            while (parser.MoveNext())
            {
                var current = parser.Current!;
                string? problem = current switch
                {
                    AnchorAlias => "a YAML alias",
                    NodeEvent { Anchor.IsEmpty: false } => "a YAML anchor",
                    _ => null,
                };
                if (current is MappingStart or SequenceStart && ++depth > MaxDepth)
                    problem = $"nesting deeper than {MaxDepth} levels";
                if (current is MappingEnd or SequenceEnd) depth--;
                if (problem is not null) return (problem, (int)current.Start.Line, (int)current.Start.Column);
            }
        }
        catch (Exception e) when (e is YamlException or InvalidOperationException) { }
        return null;
    }
}
