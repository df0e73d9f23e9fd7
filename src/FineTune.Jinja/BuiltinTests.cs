namespace FineTune.Jinja;

internal delegate bool TestFunction(object? value, List<object?> args);

/// <summary>jinja2's tests: <c>x is defined</c>, <c>x is none</c>, <c>x is divisibleby(3)</c>, ...</summary>
internal static class BuiltinTests
{
    private static readonly Dictionary<string, TestFunction> All = new(StringComparer.Ordinal)
    {
        ["defined"] = (v, _) => v is not Undefined,
        ["undefined"] = (v, _) => v is Undefined,
        ["none"] = (v, _) => v is null,
        ["boolean"] = (v, _) => v is bool,
        ["true"] = (v, _) => v is true,
        ["false"] = (v, _) => v is false,
        ["string"] = (v, _) => v is string,
        ["number"] = (v, _) => v is long or double or bool,
        ["integer"] = (v, _) => v is long,
        ["float"] = (v, _) => v is double,
        ["mapping"] = (v, _) => v is PyDict,
        ["sequence"] = (v, _) => v is string or List<object?> or PyDict,
        // iter() works on undefined in jinja2 (it iterates nothing), so an undefined value "is iterable".
        ["iterable"] = (v, _) => v is string or List<object?> or PyDict or Undefined,
        ["callable"] = (v, _) => v is ICallable,
        ["odd"] = (v, _) => Operations.AsLong(Integer(v)) % 2 != 0,
        ["even"] = (v, _) => Operations.AsLong(Integer(v)) % 2 == 0,
        ["divisibleby"] = (v, a) => Operations.AsLong(Integer(v)) % Operations.AsLong(Integer(Arg(a, 0))) == 0,
        ["lower"] = (v, _) => v is string s && s.ToLowerInvariant() == s,
        ["upper"] = (v, _) => v is string s && s.ToUpperInvariant() == s,
        ["sameas"] = (v, a) => ReferenceEquals(v, Arg(a, 0)) || (v is null && Arg(a, 0) is null)
            || (v is bool b && Arg(a, 0) is bool c && b == c),
        ["in"] = (v, a) => Operations.Contains(Arg(a, 0), v),
        ["eq"] = Equal, ["equalto"] = Equal, ["=="] = Equal,
        ["ne"] = (v, a) => !Operations.Equals(v, Arg(a, 0)), ["!="] = (v, a) => !Operations.Equals(v, Arg(a, 0)),
        ["lt"] = (v, a) => Operations.Compare(v, Arg(a, 0), "<") < 0, ["lessthan"] = (v, a)
            => Operations.Compare(v, Arg(a, 0), "<") < 0, ["<"] = (v, a) => Operations.Compare(v, Arg(a, 0), "<") < 0,
        ["le"] = (v, a) => Operations.Compare(v, Arg(a, 0), "<=") <= 0,
            ["<="] = (v, a) => Operations.Compare(v, Arg(a, 0), "<=") <= 0,
        ["gt"] = (v, a) => Operations.Compare(v, Arg(a, 0), ">") > 0, ["greaterthan"] = (v, a)
            => Operations.Compare(v, Arg(a, 0), ">") > 0, [">"] = (v, a) => Operations.Compare(v, Arg(a, 0), ">") > 0,
        ["ge"] = (v, a) => Operations.Compare(v, Arg(a, 0), ">=") >= 0,
            [">="] = (v, a) => Operations.Compare(v, Arg(a, 0), ">=") >= 0,
    };

    public static TestFunction? Find(string name) => All.GetValueOrDefault(name);

    private static bool Equal(object? value, List<object?> args) => Operations.Equals(value, Arg(args, 0));

    private static object? Arg(List<object?> args, int index) =>
        index < args.Count ? args[index]
            : throw new TemplateRuntimeException($"the test needs {index + 1} argument(s)");

    private static object? Integer(object? value)
    {
        Operations.FailIfUndefined(value);
        return Operations.IsInteger(value) ? value
            : throw new TemplateRuntimeException($"expected an integer, got '{TemplateValues.TypeName(value)}'");
    }
}
