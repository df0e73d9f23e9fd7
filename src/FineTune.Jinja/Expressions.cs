using System.Text;

namespace FineTune.Jinja;

/// <summary>An expression node. <see cref="Offset"/> locates it in the template for error messages.</summary>
internal abstract class Expr(int offset)
{
    public int Offset { get; } = offset;

    public object? Evaluate(RenderContext context, Scope scope)
    {
        try
        {
            return EvaluateCore(context, scope);
        }
        catch (TemplateRuntimeException e)
        {
            throw context.Error(e.Message, Offset);
        }
    }

    protected abstract object? EvaluateCore(RenderContext context, Scope scope);
}

internal sealed class ConstantExpr(object? value, int offset) : Expr(offset)
{
    public object? Value { get; } = value;
    protected override object? EvaluateCore(RenderContext context, Scope scope) => Value;
}

internal sealed class NameExpr(string name, int offset) : Expr(offset)
{
    public string Name { get; } = name;

    protected override object? EvaluateCore(RenderContext context, Scope scope) =>
        scope.TryGet(Name, out var value) ? value : Undefined.ForName(Name);
}

/// <summary>A list literal <c>[a, b]</c> or a tuple <c>(a, b)</c>.</summary>
internal sealed class ListExpr(IReadOnlyList<Expr> items, int offset, bool isTuple = false) : Expr(offset)
{
    public IReadOnlyList<Expr> Items { get; } = items;

    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var list = isTuple ? new PyTuple() : new List<object?>(Items.Count);
        foreach (var item in Items) list.Add(item.Evaluate(context, scope));
        return list;
    }
}

internal sealed class DictExpr(IReadOnlyList<(Expr Key, Expr Value)> entries, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var dict = new PyDict(entries.Count);
        foreach (var (key, value) in entries)
        {
            var k = key.Evaluate(context, scope);
            if (k is null or Undefined or List<object?> or PyDict)
                throw new TemplateRuntimeException($"unhashable dict key of type '{TemplateValues.TypeName(k)}'");
            dict[k] = value.Evaluate(context, scope);
        }
        return dict;
    }
}

internal sealed class AttributeExpr(Expr target, string name, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
        => Operations.GetAttribute(target.Evaluate(context, scope), name);
}

internal sealed class ItemExpr(Expr target, Expr key, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope) =>
        Operations.GetItem(target.Evaluate(context, scope), key.Evaluate(context, scope));
}

internal sealed class SliceExpr(Expr target, Expr? start, Expr? stop, Expr? step, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope) =>
        Operations.Slice(target.Evaluate(context, scope), start?.Evaluate(context, scope),
            stop?.Evaluate(context, scope), step?.Evaluate(context, scope));
}

/// <summary>Positional and keyword arguments of a call, filter or test.</summary>
internal sealed class Arguments(IReadOnlyList<Expr> positional, IReadOnlyList<(string Name, Expr Value)> keywords)
{
    public static readonly Arguments None = new([], []);
    public IReadOnlyList<Expr> Positional { get; } = positional;
    public IReadOnlyList<(string Name, Expr Value)> Keywords { get; } = keywords;

    public (List<object?> Args, Dictionary<string, object?>? Kwargs) Evaluate(RenderContext context, Scope scope,
        object? first = null, bool hasFirst = false)
    {
        var args = new List<object?>(Positional.Count + 1);
        if (hasFirst) args.Add(first);
        foreach (var arg in Positional) args.Add(arg.Evaluate(context, scope));
        Dictionary<string, object?>? kwargs = null;
        foreach (var (name, value) in Keywords)
            (kwargs ??= new(StringComparer.Ordinal))[name] = value.Evaluate(context, scope);
        return (args, kwargs);
    }
}

internal sealed class CallExpr(Expr callee, Arguments arguments, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var target = callee.Evaluate(context, scope);
        var (args, kwargs) = arguments.Evaluate(context, scope);
        return target switch
        {
            ICallable callable => callable.Call(args, kwargs, new CallSite(context, Offset)),
            Undefined undefined => throw new TemplateRuntimeException(undefined.Message),
            _ => throw new TemplateRuntimeException($"'{TemplateValues.TypeName(target)}' object is not callable"),
        };
    }
}

internal sealed class FilterExpr(Expr value, string name, FilterFunction filter, Arguments arguments, int offset)
    : Expr(offset)
{
    public string Name { get; } = name;

    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var input = value.Evaluate(context, scope);
        var (args, kwargs) = arguments.Evaluate(context, scope);
        return filter(input, args, kwargs, new CallSite(context, Offset));
    }

    /// <summary>Applies the filter to an already computed value (the {% filter %} block and `set x | f` use
    /// this).</summary>
    public object? Apply(object? input, RenderContext context, Scope scope)
    {
        try
        {
            var (args, kwargs) = arguments.Evaluate(context, scope);
            return filter(input, args, kwargs, new CallSite(context, Offset));
        }
        catch (TemplateRuntimeException e)
        {
            throw context.Error(e.Message, Offset);
        }
    }
}

internal sealed class TestExpr(Expr value, TestFunction test, Arguments arguments, bool negated, int offset)
    : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var input = value.Evaluate(context, scope);
        var (args, _) = arguments.Evaluate(context, scope);
        return test(input, args) != negated;
    }
}

internal sealed class NotExpr(Expr operand, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
        => !TemplateValues.IsTruthy(operand.Evaluate(context, scope));
}

internal sealed class NegateExpr(Expr operand, bool minus, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var value = operand.Evaluate(context, scope);
        return minus ? Operations.Negate(value) : Operations.Plus(value);
    }
}

/// <summary>`and` / `or`: short-circuit and yield an operand, as Python does (<c>x or 'default'</c>).</summary>
internal sealed class LogicalExpr(Expr left, Expr right, bool isAnd, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var first = left.Evaluate(context, scope);
        return TemplateValues.IsTruthy(first) == isAnd ? right.Evaluate(context, scope) : first;
    }
}

internal sealed class BinaryExpr(string op, Expr left, Expr right, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var a = left.Evaluate(context, scope);
        var b = right.Evaluate(context, scope);
        return op switch
        {
            "+" => Operations.Add(a, b),
            "-" => Operations.Subtract(a, b),
            "*" => Operations.Multiply(a, b),
            "/" => Operations.Divide(a, b),
            "//" => Operations.FloorDivide(a, b),
            "%" => Operations.Modulo(a, b),
            "**" => Operations.Power(a, b),
            _ => throw new InvalidOperationException(op),
        };
    }
}

/// <summary>`a ~ b ~ c`: everything converted with str() and joined; undefined parts print as nothing.</summary>
internal sealed class ConcatExpr(IReadOnlyList<Expr> parts, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var text = new StringBuilder();
        foreach (var part in parts) PythonText.AppendStr(text, part.Evaluate(context, scope));
        return text.ToString();
    }
}

/// <summary>A comparison chain: <c>a &lt; b &lt;= c</c> means <c>a &lt; b and b &lt;= c</c>.</summary>
internal sealed class CompareExpr(Expr first, IReadOnlyList<(string Op, Expr Operand)> rest, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope)
    {
        var left = first.Evaluate(context, scope);
        foreach (var (op, operand) in rest)
        {
            var right = operand.Evaluate(context, scope);
            var holds = op switch
            {
                "==" => Operations.Equals(left, right),
                "!=" => !Operations.Equals(left, right),
                "<" => Operations.Compare(left, right, op) < 0,
                "<=" => Operations.Compare(left, right, op) <= 0,
                ">" => Operations.Compare(left, right, op) > 0,
                ">=" => Operations.Compare(left, right, op) >= 0,
                "in" => Operations.Contains(right, left),
                "not in" => !Operations.Contains(right, left),
                _ => throw new InvalidOperationException(op),
            };
            if (!holds) return false;
            left = right;
        }
        return true;
    }
}

/// <summary><c>a if condition else b</c>; without <c>else</c> the result is undefined when the condition
/// fails.</summary>
internal sealed class ConditionalExpr(Expr condition, Expr then, Expr? otherwise, int offset) : Expr(offset)
{
    protected override object? EvaluateCore(RenderContext context, Scope scope) =>
        TemplateValues.IsTruthy(condition.Evaluate(context, scope))
            ? then.Evaluate(context, scope)
            : otherwise is null
                ? new Undefined("the inline if expression evaluated to false and no else section was defined")
                : otherwise.Evaluate(context, scope);
}
