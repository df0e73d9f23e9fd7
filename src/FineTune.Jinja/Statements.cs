using System.Text;

namespace FineTune.Jinja;

/// <summary>What a statement tells the enclosing loop: carry on, or {% break %} / {% continue %}.</summary>
internal enum Flow { Normal, Break, Continue }

/// <summary>A template statement: text, {{ output }} or a {% tag %} with its body.</summary>
internal abstract class Stmt(int offset)
{
    public int Offset { get; } = offset;
    public abstract Flow Render(RenderContext context, Scope scope, StringBuilder output);

    public static Flow RenderAll(IReadOnlyList<Stmt> body, RenderContext context, Scope scope, StringBuilder output)
    {
        foreach (var statement in body)
        {
            var flow = statement.Render(context, scope, output);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    /// <summary>The rendered <paramref name="body"/> as a string, passed through <paramref name="filters"/> (block set,
    /// filter blocks).</summary>
    protected static object? RenderFiltered(IReadOnlyList<Stmt> body, IReadOnlyList<FilterExpr> filters,
        RenderContext context, Scope scope)
    {
        var captured = new StringBuilder();
        RenderAll(body, context, scope, captured);
        object? value = captured.ToString();
        foreach (var filter in filters) value = filter.Apply(value, context, scope);
        return value;
    }
}

internal sealed class TextStmt(string text, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        output.Append(text);
        return Flow.Normal;
    }
}

internal sealed class OutputStmt(Expr value, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        PythonText.AppendStr(output, value.Evaluate(context, scope));
        return Flow.Normal;
    }
}

/// <summary>Renders its body in place: {% generation %} (transformers' assistant-mask marker) is just that.</summary>
internal sealed class BlockStmt(IReadOnlyList<Stmt> body, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
        => RenderAll(body, context, scope, output);
}

internal sealed class IfStmt(IReadOnlyList<(Expr Condition, IReadOnlyList<Stmt> Body)> branches,
    IReadOnlyList<Stmt> otherwise, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        foreach (var (condition, body) in branches)
            if (TemplateValues.IsTruthy(condition.Evaluate(context, scope)))
                return RenderAll(body, context, scope, output);
        return RenderAll(otherwise, context, scope, output);
    }
}

internal sealed class ForStmt(IReadOnlyList<string> targets, Expr iterable, Expr? filter, IReadOnlyList<Stmt> body,
    IReadOnlyList<Stmt> otherwise, int offset)
    : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        var source = iterable.Evaluate(context, scope);
        List<object?> items;
        try
        {
            items = Operations.Iterate(source);
        }
        catch (TemplateRuntimeException e)
        {
            throw context.Error(e.Message, iterable.Offset);
        }

        if (filter is not null)
        {
            // `for x in xs if cond`: the condition sees the loop variable; loop.* then counts only what passed.
            var kept = new List<object?>();
            foreach (var item in items)
            {
                var filterScope = new Scope(scope);
                Bind(filterScope, item, context);
                if (TemplateValues.IsTruthy(filter.Evaluate(context, filterScope))) kept.Add(item);
            }
            items = kept;
        }

        if (items.Count == 0) return RenderAll(otherwise, context, scope, output);

        var loop = new LoopContext(items, depth: 1);
        for (var i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            var iterationScope = new Scope(scope);
            iterationScope.Set("loop", loop);
            Bind(iterationScope, items[i], context);
            if (RenderAll(body, context, iterationScope, output) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    private void Bind(Scope scope, object? item, RenderContext context)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], item);
            return;
        }
        if (item is not List<object?> values || values.Count != targets.Count)
            throw context.Error($"cannot unpack {TemplateValues.TypeName(item)} into {targets.Count} loop variables",
                Offset);
        for (var i = 0; i < targets.Count; i++) scope.Set(targets[i], values[i]);
    }
}

internal sealed class LoopControlStmt(Flow flow, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output) => flow;
}

/// <summary>{% set x = ... %}, {% set a, b = ... %} and {% set ns.attr = ... %}.</summary>
internal sealed class SetStmt(IReadOnlyList<string> targets, string? attribute, Expr value, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        var result = value.Evaluate(context, scope);
        if (attribute is not null)
        {
            scope.TryGet(targets[0], out var target);
            if (target is not Namespace ns)
                throw context.Error($"cannot assign attribute '{attribute}' on '{targets[0]}': only a namespace() " +
                    $"accepts attribute assignment", Offset);
            ns.Attributes[attribute] = result;
        }
        else if (targets.Count == 1)
        {
            scope.Set(targets[0], result);
        }
        else
        {
            if (result is not List<object?> values || values.Count != targets.Count)
                throw context.Error($"cannot unpack {TemplateValues.TypeName(result)} into {targets.Count} variables",
                    Offset);
            for (var i = 0; i < targets.Count; i++) scope.Set(targets[i], values[i]);
        }
        return Flow.Normal;
    }
}

/// <summary>{% set x %}...{% endset %}: the rendered body, optionally through filters, becomes the value.</summary>
internal sealed class BlockSetStmt(string target, IReadOnlyList<FilterExpr> filters, IReadOnlyList<Stmt> body,
    int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        scope.Set(target, RenderFiltered(body, filters, context, scope));
        return Flow.Normal;
    }
}

/// <summary>{% filter upper %}...{% endfilter %}.</summary>
internal sealed class FilterBlockStmt(IReadOnlyList<FilterExpr> filters, IReadOnlyList<Stmt> body, int offset)
    : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        PythonText.AppendStr(output, RenderFiltered(body, filters, context, scope));
        return Flow.Normal;
    }
}

internal sealed class MacroStmt(string name, IReadOnlyList<(string Name, Expr? Default)> parameters,
    IReadOnlyList<Stmt> body, int offset) : Stmt(offset)
{
    public override Flow Render(RenderContext context, Scope scope, StringBuilder output)
    {
        scope.Set(name, new Macro(name, parameters, body, scope));
        return Flow.Normal;
    }
}

/// <summary>A defined macro: calling it renders the body in a fresh scope over the one it was defined in.</summary>
internal sealed class Macro(string name, IReadOnlyList<(string Name, Expr? Default)> parameters,
    IReadOnlyList<Stmt> body, Scope definitionScope)
    : ICallable
{
    private const int MaxDepth = 200;

    public object? Call(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var context = site.Context;
        if (args.Count > parameters.Count)
            throw new TemplateRuntimeException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
        var scope = new Scope(definitionScope);
        for (var i = 0; i < parameters.Count; i++)
        {
            var (parameter, defaultValue) = parameters[i];
            object? value;
            if (i < args.Count) value = args[i];
            else if (kwargs is not null && kwargs.Remove(parameter, out var named)) value = named;
            else value = defaultValue is null ? new Undefined($"parameter '{parameter}' was not provided")
                : defaultValue.Evaluate(context, scope);
            scope.Set(parameter, value);
        }
        if (kwargs is { Count: > 0 })
            throw new TemplateRuntimeException($"macro '{name}' has no parameter named '{kwargs.Keys.First()}'");

        if (++context.MacroDepth > MaxDepth)
            throw new TemplateRuntimeException($"macro '{name}' recursed more than {MaxDepth} levels");
        try
        {
            var output = new StringBuilder();
            Stmt.RenderAll(body, context, scope, output);
            return output.ToString();
        }
        finally
        {
            context.MacroDepth--;
        }
    }
}
