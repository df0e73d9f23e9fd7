using System.Text;
using System.Text.Json.Nodes;

namespace FineTune.Jinja;

/// <summary>
/// A parsed Jinja template, rendered as jinja2 would with transformers' chat-template settings: trim_blocks and
/// lstrip_blocks on, no autoescaping, lenient undefined values, loop controls, and the {% generation %} tag.
/// Parse once, render many times: rendering reuses the tree and keeps no state between calls.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly SourceText _source;
    private readonly IReadOnlyList<Stmt> _body;

    private JinjaTemplate(SourceText source, IReadOnlyList<Stmt> body)
    {
        _source = source;
        _body = body;
    }

    /// <summary>Parses <paramref name="source"/>; errors throw <see cref="JinjaException"/> located in
    /// <paramref name="origin"/>.</summary>
    public static JinjaTemplate Parse(string source, string origin)
    {
        var text = new SourceText(source, origin);
        return new JinjaTemplate(text, JinjaParser.Parse(text));
    }

    /// <summary>Renders with <paramref name="variables"/> as top-level names (JSON null is None); failures throw
    /// <see cref="JinjaException"/>.</summary>
    public string Render(IReadOnlyDictionary<string, JsonNode?> variables)
    {
        var values = new Dictionary<string, object?>(variables.Count, StringComparer.Ordinal);
        foreach (var (name, value) in variables) values[name] = TemplateValues.FromJson(value);
        return RenderValues(values);
    }

    // Shared by every render: Set writes only to the scope it is called on, and the functions hold no state.
    private static readonly Scope Builtins = BuiltinScope();

    private static Scope BuiltinScope()
    {
        var scope = new Scope(null);
        foreach (var (name, value) in Globals.All) scope.Set(name, value);
        return scope;
    }

    /// <summary>Renders with variables already converted to template values (see
    /// <see cref="TemplateValues"/>).</summary>
    internal string RenderValues(IReadOnlyDictionary<string, object?> variables)
    {
        var globals = new Scope(Builtins);
        foreach (var (name, value) in variables) globals.Set(name, value);

        var output = new StringBuilder();
        var context = new RenderContext(_source, globals);
        Stmt.RenderAll(_body, context, globals, output);
        return output.ToString();
    }
}
