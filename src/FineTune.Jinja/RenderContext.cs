namespace FineTune.Jinja;

/// <summary>Per-render state shared by every node: where errors point, and the outermost variable scope.</summary>
internal sealed class RenderContext(SourceText source, Scope globals)
{
    public SourceText Source { get; } = source;
    public Scope Globals { get; } = globals;
    public int MacroDepth { get; set; }

    /// <summary>A runtime failure located at <paramref name="offset"/> in the template.</summary>
    public JinjaException Error(string message, int offset) => Source.Error(JinjaErrorKind.Runtime, message, offset);
}

/// <summary>
/// Variables visible at one point of the template. jinja2 gives each for-loop iteration and each macro call a
/// fresh scope (so `set` inside a loop does not outlive the iteration); `if` blocks share their parent's.
/// </summary>
internal sealed class Scope(Scope? parent)
{
    private Dictionary<string, object?>? _variables;

    public bool TryGet(string name, out object? value)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
            if (scope._variables is not null && scope._variables.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => (_variables ??= new(StringComparer.Ordinal))[name] = value;

    public Scope? Parent { get; } = parent;
}
