using System.Text;

namespace FineTune.Jinja;

/// <summary>Python's semantics for the operators and protocols templates use: arithmetic, comparison, `in`, len,
/// iteration, indexing.</summary>
internal static class Operations
{
    // ---- arithmetic ------------------------------------------------------------------------------------------------

    public static object? Add(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (a is string sa && b is string sb) return string.Concat(sa, sb);
        if (IsInteger(a) && IsInteger(b)) return AsLong(a) + AsLong(b);
        if (IsNumber(a) && IsNumber(b)) return AsDouble(a) + AsDouble(b);
        if (a is List<object?> la && b is List<object?> lb)
        {
            var joined = new List<object?>(la.Count + lb.Count);
            joined.AddRange(la);
            joined.AddRange(lb);
            return joined;
        }
        if (a is string)
            throw new TemplateRuntimeException(
                $"can only concatenate str (not \"{TemplateValues.TypeName(b)}\") to str");
        throw Unsupported("+", a, b);
    }

    public static object? Subtract(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsInteger(a) && IsInteger(b)) return AsLong(a) - AsLong(b);
        if (IsNumber(a) && IsNumber(b)) return AsDouble(a) - AsDouble(b);
        throw Unsupported("-", a, b);
    }

    public static object? Multiply(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsInteger(a) && IsInteger(b)) return AsLong(a) * AsLong(b);
        if (IsNumber(a) && IsNumber(b)) return AsDouble(a) * AsDouble(b);
        if (a is string s && IsInteger(b)) return Repeat(s, AsLong(b));
        if (b is string s2 && IsInteger(a)) return Repeat(s2, AsLong(a));
        if (a is List<object?> list && IsInteger(b))
        {
            var repeated = new List<object?>();
            for (var i = 0L; i < AsLong(b); i++) repeated.AddRange(list);
            return repeated;
        }
        throw Unsupported("*", a, b);
    }

    private static string Repeat(string s, long times)
    {
        if (times <= 0) return "";
        var text = new StringBuilder(s.Length * (int)times);
        for (var i = 0; i < times; i++) text.Append(s);
        return text.ToString();
    }

    public static object? Divide(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (!IsNumber(a) || !IsNumber(b)) throw Unsupported("/", a, b);
        var divisor = AsDouble(b);
        if (divisor == 0) throw new TemplateRuntimeException("division by zero");
        return AsDouble(a) / divisor;
    }

    public static object? FloorDivide(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsInteger(a) && IsInteger(b))
        {
            var (x, y) = (AsLong(a), AsLong(b));
            if (y == 0) throw new TemplateRuntimeException("integer division or modulo by zero");
            var q = x / y;
            return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
        }
        if (IsNumber(a) && IsNumber(b))
        {
            var divisor = AsDouble(b);
            if (divisor == 0) throw new TemplateRuntimeException("float floor division by zero");
            return Math.Floor(AsDouble(a) / divisor);
        }
        throw Unsupported("//", a, b);
    }

    public static object? Modulo(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsInteger(a) && IsInteger(b))
        {
            var (x, y) = (AsLong(a), AsLong(b));
            if (y == 0) throw new TemplateRuntimeException("integer division or modulo by zero");
            var r = x % y;
            return r != 0 && (r < 0) != (y < 0) ? r + y : r;
        }
        if (IsNumber(a) && IsNumber(b))
        {
            var (x, y) = (AsDouble(a), AsDouble(b));
            if (y == 0) throw new TemplateRuntimeException("float modulo");
            var r = x % y;
            return r != 0 && (r < 0) != (y < 0) ? r + y : r;
        }
        if (a is string)
            throw new TemplateRuntimeException("printf-style '%' string formatting is not supported; use ~ or the " +
                "format filter");
        throw Unsupported("%", a, b);
    }

    public static object? Power(object? a, object? b)
    {
        FailIfUndefined(a);
        FailIfUndefined(b);
        if (IsInteger(a) && IsInteger(b) && AsLong(b) >= 0)
        {
            long result = 1, x = AsLong(a);
            for (var i = 0L; i < AsLong(b); i++) result *= x;
            return result;
        }
        if (IsNumber(a) && IsNumber(b)) return Math.Pow(AsDouble(a), AsDouble(b));
        throw Unsupported("**", a, b);
    }

    public static object? Negate(object? a)
    {
        FailIfUndefined(a);
        if (IsInteger(a)) return -AsLong(a);
        if (a is double d) return -d;
        throw new TemplateRuntimeException($"bad operand type for unary -: '{TemplateValues.TypeName(a)}'");
    }

    public static object? Plus(object? a)
    {
        FailIfUndefined(a);
        if (IsInteger(a)) return AsLong(a);
        if (a is double) return a;
        throw new TemplateRuntimeException($"bad operand type for unary +: '{TemplateValues.TypeName(a)}'");
    }

    private static TemplateRuntimeException Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand type(s) for {op}: '{TemplateValues.TypeName(a)}' and '{TemplateValues.TypeName(b)}'");

    public static void FailIfUndefined(object? value)
    {
        if (value is Undefined undefined) throw new TemplateRuntimeException(undefined.Message);
    }

    // Python's bool is an int: True + 1 == 2.
    public static bool IsInteger(object? value) => value is long or bool;
    public static bool IsNumber(object? value) => value is long or bool or double;
    public static long AsLong(object? value)
        => value switch { long l => l, bool b => b ? 1 : 0, double d => (long)d, _ => 0 };
    public static double AsDouble(object? value)
        => value switch { long l => l, bool b => b ? 1 : 0, double d => d, _ => 0 };

    // ---- comparison ------------------------------------------------------------------------------------------------

    public static new bool Equals(object? a, object? b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a is null || b is null) return false;
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a) && IsInteger(b) ? AsLong(a) == AsLong(b) : AsDouble(a) == AsDouble(b);
        switch (a)
        {
            case string sa: return b is string sb && string.Equals(sa, sb, StringComparison.Ordinal);
            case Undefined: return b is Undefined;
            case List<object?> la:
                if (b is not List<object?> lb || la.Count != lb.Count) return false;
                for (var i = 0; i < la.Count; i++)
                    if (!Equals(la[i], lb[i])) return false;
                return true;
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                foreach (var (key, value) in da)
                    if (!db.TryGetValue(key, out var other) || !Equals(value, other)) return false;
                return true;
            default:
                return a.Equals(b);
        }
    }

    /// <summary>Python's ordering for &lt; &lt;= &gt; &gt;=: numbers, strings (by code point), lists element by
    /// element.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a) && IsInteger(b) ? AsLong(a).CompareTo(AsLong(b)) : AsDouble(a).CompareTo(AsDouble(b));
        if (a is string sa && b is string sb) return Math.Sign(string.CompareOrdinal(sa, sb));
        if (a is List<object?> la && b is List<object?> lb)
        {
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
                if (!Equals(la[i], lb[i])) return Compare(la[i], lb[i], op);
            return la.Count.CompareTo(lb.Count);
        }
        FailIfUndefined(a);
        FailIfUndefined(b);
        throw new TemplateRuntimeException($"'{op}' not supported between instances of " +
            $"'{TemplateValues.TypeName(a)}' and '{TemplateValues.TypeName(b)}'");
    }

    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                if (item is not string sub)
                    throw new TemplateRuntimeException($"'in <string>' requires string as left operand, not " +
                        $"{TemplateValues.TypeName(item)}");
                return s.Contains(sub, StringComparison.Ordinal);
            case List<object?> list:
                foreach (var element in list)
                    if (Equals(element, item)) return true;
                return false;
            case PyDict dict:
                return item is not null && dict.ContainsKey(item);
            case Undefined:
                return false;
            default:
                throw new TemplateRuntimeException($"argument of type '{TemplateValues.TypeName(container)}' is not " +
                    $"iterable");
        }
    }

    // ---- containers ------------------------------------------------------------------------------------------------

    /// <summary>What a for loop walks: list items, dict keys, string characters; nothing for undefined.</summary>
    public static List<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        PyDict dict => [.. dict.Keys],
        string s => [.. CodePoints(s)],
        Undefined => [],
        _ => throw new TemplateRuntimeException($"'{TemplateValues.TypeName(value)}' object is not iterable"),
    };

    public static long Length(object? value) => value switch
    {
        string s => CodePointCount(s),
        List<object?> list => list.Count,
        PyDict dict => dict.Count,
        Undefined => 0,
        Namespace ns => ns.Attributes.Count,
        _ => throw new TemplateRuntimeException($"object of type '{TemplateValues.TypeName(value)}' has no len()"),
    };

    /// <summary>Python strings are sequences of code points: an emoji is one item, not two UTF-16 halves.</summary>
    public static IEnumerable<object?> CodePoints(string s)
    {
        if (!HasSurrogates(s))
        {
            foreach (var c in s) yield return c.ToString();
            yield break;
        }
        foreach (var rune in s.EnumerateRunes()) yield return rune.ToString();
    }

    private static bool HasSurrogates(string s)
    {
        foreach (var c in s)
            if (char.IsSurrogate(c)) return true;
        return false;
    }

    private static int CodePointCount(string s) => HasSurrogates(s) ? s.EnumerateRunes().Count() : s.Length;

    /// <summary>jinja2's <c>obj.name</c>: the attribute if Python has one (dict.items, str.strip), else the item, else
    /// undefined.</summary>
    public static object? GetAttribute(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined undefined:
                throw new TemplateRuntimeException(undefined.Message);
            case PyDict dict:
                if (Methods.IsDictMethod(name)) return new BoundMethod(dict, name);
                return dict.TryGetValue(name, out var value) ? value
                    : new Undefined($"'dict object' has no attribute '{name}'");
            case string s:
                return Methods.IsStringMethod(name) ? new BoundMethod(s, name)
                    : new Undefined($"'str object' has no attribute '{name}'");
            case Namespace ns:
                return ns.Attributes.TryGetValue(name, out var attribute) ? attribute
                    : new Undefined($"'Namespace object' has no attribute '{name}'");
            case LoopContext loop:
                return loop.Attribute(name);
            case null:
                return new Undefined($"'None' has no attribute '{name}'");
            default:
                return new Undefined($"'{TemplateValues.TypeName(obj)} object' has no attribute '{name}'");
        }
    }

    /// <summary>jinja2's <c>obj[key]</c>: the item, else for a string key the attribute, else undefined.</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined undefined:
                throw new TemplateRuntimeException(undefined.Message);
            case List<object?> list when IsInteger(key):
                var index = AsLong(key);
                if (index < 0) index += list.Count;
                return index >= 0 && index < list.Count ? list[(int)index]
                    : new Undefined($"'list object' has no element {AsLong(key)}");
            case string s when IsInteger(key):
                var chars = CodePoints(s).ToList();
                var at = AsLong(key);
                if (at < 0) at += chars.Count;
                return at >= 0 && at < chars.Count ? chars[(int)at]
                    : new Undefined($"'str object' has no element {AsLong(key)}");
            case PyDict dict when key is not null:
                if (dict.TryGetValue(key, out var value)) return value;
                if (IsInteger(key) && dict.TryGetValue(AsLong(key), out value)) return value;
                break;
        }
        return key is string name ? GetAttribute(obj, name)
            : new Undefined($"'{TemplateValues.TypeName(obj)} object' has no element {PythonText.Repr(key)}");
    }

    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        FailIfUndefined(obj);
        List<object?> items = obj switch
        {
            List<object?> list => list,
            string s => CodePoints(s).ToList(),
            _ => throw new TemplateRuntimeException($"'{TemplateValues.TypeName(obj)}' object is not subscriptable"),
        };
        var stepValue = step is null or Undefined ? 1 : AsLong(step);
        if (stepValue == 0) throw new TemplateRuntimeException("slice step cannot be zero");
        var count = items.Count;
        long Clamp(object? bound, long whenMissing)
        {
            if (bound is null or Undefined) return whenMissing;
            var value = AsLong(bound);
            if (value < 0) value += count;
            return stepValue > 0 ? Math.Clamp(value, 0, count) : Math.Clamp(value, -1, count - 1);
        }
        var from = Clamp(start, stepValue > 0 ? 0 : count - 1);
        var to = Clamp(stop, stepValue > 0 ? count : -1);
        var result = new List<object?>();
        for (var i = from; stepValue > 0 ? i < to : i > to; i += stepValue) result.Add(items[(int)i]);
        return obj is string ? string.Concat(result.Cast<string>()) : result;
    }
}

/// <summary><c>"text".strip</c> or <c>dict.items</c> before it is called.</summary>
internal sealed class BoundMethod(object target, string name) : ICallable
{
    public object Target { get; } = target;
    public string Name { get; } = name;

    public object? Call(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
        => Methods.Call(Target, Name, args, kwargs);
}
