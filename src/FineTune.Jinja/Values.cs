using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Jinja;

// Template values are plain CLR objects standing in for Python's:
//   null = None, bool, long = int, double = float, string = str,
//   List<object?> = list, PyTuple (a List) = tuple, PyDict = dict, Undefined, Namespace, LoopContext, ICallable.

/// <summary>jinja2's default <c>Undefined</c>: prints as nothing and is falsy, but touching its attributes
/// fails.</summary>
internal sealed class Undefined
{
    /// <summary>What jinja2 says when the value is used: "'x' is undefined", "'dict object' has no attribute
    /// 'y'".</summary>
    public string Message { get; }
    public Undefined(string message) => Message = message;

    public static Undefined ForName(string name) => new($"'{name}' is undefined");
}

/// <summary>A Python dict: insertion-ordered, keyed by str (or int/bool) values.</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    public PyDict() { }
    public PyDict(int capacity) : base(capacity) { }
}

/// <summary>A Python tuple: a list everywhere except in how it prints, <c>(1, 'a')</c>.</summary>
internal sealed class PyTuple : List<object?>
{
    public PyTuple() { }
    public PyTuple(IEnumerable<object?> items) : base(items) { }
}

/// <summary>The object <c>namespace()</c> returns: the one thing a loop body can assign to that outlives the
/// iteration.</summary>
internal sealed class Namespace
{
    public Dictionary<string, object?> Attributes { get; } = new(StringComparer.Ordinal);
}

/// <summary>Something a template can call: a macro, a global function, a bound method.</summary>
internal interface ICallable
{
    object? Call(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site);
}

/// <summary>Where a call happens, so errors raised inside it point at the template line.</summary>
internal readonly record struct CallSite(RenderContext Context, int Offset);

/// <summary>The special <c>loop</c> variable inside a for block.</summary>
internal sealed class LoopContext
{
    private readonly List<object?> _items;
    public int Index0 { get; set; }
    public int Depth { get; }

    public LoopContext(List<object?> items, int depth)
    {
        _items = items;
        Depth = depth;
    }

    public int Length => _items.Count;

    public object? Attribute(string name) => name switch
    {
        "index" => (long)(Index0 + 1),
        "index0" => (long)Index0,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "depth" => (long)Depth,
        "depth0" => (long)(Depth - 1),
        "previtem" => Index0 > 0 ? _items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 < Length - 1 ? _items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (args, _, _) => args.Count == 0 ? null : args[Index0 % args.Count]),
        _ => new Undefined($"'LoopContext object' has no attribute '{name}'"),
    };
}

/// <summary>A global function or bound method implemented in C#.</summary>
internal sealed class BuiltinFunction : ICallable
{
    public string Name { get; }
    private readonly Func<List<object?>, Dictionary<string, object?>?, CallSite, object?> _body;

    public BuiltinFunction(string name, Func<List<object?>, Dictionary<string, object?>?, CallSite, object?> body)
    {
        Name = name;
        _body = body;
    }

    public object? Call(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
        => _body(args, kwargs, site);
}

/// <summary>Conversions between JSON and template values.</summary>
internal static class TemplateValues
{
    public static object? FromJson(JsonNode? node)
    {
        switch (node)
        {
            case null:
                return null;
            case JsonObject obj:
                var dict = new PyDict(obj.Count);
                foreach (var (key, value) in obj) dict[key] = FromJson(value);
                return dict;
            case JsonArray array:
                var list = new List<object?>(array.Count);
                foreach (var item in array) list.Add(FromJson(item));
                return list;
            case JsonValue value:
                return FromJsonValue(value);
            default:
                return null;
        }
    }

    private static object? FromJsonValue(JsonValue value)
    {
        if (value.TryGetValue<JsonElement>(out var element)) return FromJsonElement(element);
        if (value.TryGetValue<string>(out var s)) return s;
        if (value.TryGetValue<bool>(out var b)) return b;
        if (value.TryGetValue<long>(out var l)) return l;
        if (value.TryGetValue<int>(out var i)) return (long)i;
        if (value.TryGetValue<double>(out var d)) return d;
        if (value.TryGetValue<float>(out var f)) return (double)f;
        if (value.TryGetValue<decimal>(out var m)) return (double)m;
        return FromJsonElement(JsonSerializer.SerializeToElement(value));
    }

    private static object? FromJsonElement(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        // Python's json.loads keeps 1 and 1.0 apart (int vs float); so do we, by the literal's spelling.
        JsonValueKind.Number => IsIntegerLiteral(element.GetRawText()) && element.TryGetInt64(out var l) ? (object)l
            : element.GetDouble(),
        JsonValueKind.Array => FromJson(JsonArray.Create(element)),
        JsonValueKind.Object => FromJson(JsonObject.Create(element)),
        _ => null,
    };

    private static bool IsIntegerLiteral(string raw) => raw.IndexOfAny(['.', 'e', 'E']) < 0;

    public static bool IsTruthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        PyDict dict => dict.Count > 0,
        Undefined => false,
        _ => true,
    };

    /// <summary>Python's type name, for error messages.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        ICallable => "function",
        _ => value.GetType().Name,
    };
}
