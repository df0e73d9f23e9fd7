using System.Globalization;
using System.Text;

namespace FineTune.Jinja;

internal delegate object? FilterFunction(object? value, List<object?> args, Dictionary<string, object?>? kwargs,
    CallSite site);

/// <summary>jinja2's built-in filters that chat templates use, plus transformers' own <c>tojson</c>.</summary>
internal static class Filters
{
    private static readonly Dictionary<string, FilterFunction> All = new(StringComparer.Ordinal)
    {
        ["tojson"] = ToJson,
        ["trim"] = (v, a, k, _)
            => Methods.Strip(Text(v), Optional(a, k, 0, "chars") is string chars ? chars : null, true, true),
        ["length"] = (v, _, _, _) => Operations.Length(v),
        ["count"] = (v, _, _, _) => Operations.Length(v),
        ["first"] = (v, _, _, _) => Operations.Iterate(v) is { Count: > 0 } items ? items[0]
            : new Undefined("No first item, sequence was empty."),
        ["last"] = (v, _, _, _) => Operations.Iterate(v) is { Count: > 0 } items ? items[^1]
            : new Undefined("No last item, sequence was empty."),
        ["join"] = Join,
        ["default"] = Default,
        ["d"] = Default,
        ["upper"] = (v, _, _, _) => Text(v).ToUpperInvariant(),
        ["lower"] = (v, _, _, _) => Text(v).ToLowerInvariant(),
        ["capitalize"] = (v, _, _, _) => Text(v) is { Length: > 0 } s
            ? char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant() : "",
        ["title"] = (v, _, _, _) => Title(Text(v)),
        ["replace"] = (v, a, k, _)
            => Methods.Replace(Text(v), Text(Required(a, k, 0, "old")), Text(Required(a, k, 1, "new")),
            Optional(a, k, 2, "count") is { } count ? Operations.AsLong(count) : -1),
        ["string"] = (v, _, _, _) => PythonText.Str(v),
        ["safe"] = (v, _, _, _) => v,
        ["int"] = ToInt,
        ["float"] = ToFloat,
        ["abs"] = (v, _, _, _) => v is double d ? Math.Abs(d) : (object)Math.Abs(Operations.AsLong(Number(v))),
        ["round"] = Round,
        ["list"] = (v, _, _, _) => new List<object?>(Operations.Iterate(v)),
        ["tuple"] = (v, _, _, _) => new PyTuple(Operations.Iterate(v)),
        ["items"] = (v, _, _, _) => v is Undefined ? new List<object?>() : v is PyDict dict
            ? dict.Select(e => (object?)new PyTuple { e.Key, e.Value }).ToList()
            : throw new TemplateRuntimeException($"items filter needs a mapping, got '{TemplateValues.TypeName(v)}'"),
        ["dictsort"] = DictSort,
        ["reverse"] = (v, _, _, _) => v is string s
            ? new string(s.EnumerateRunes().Reverse().SelectMany(r => r.ToString()).ToArray())
            : Enumerable.Reverse(Operations.Iterate(v)).ToList(),
        ["sort"] = Sort,
        ["unique"] = Unique,
        ["map"] = Map,
        ["select"] = (v, a, _, s) => Select(v, a, keep: true),
        ["reject"] = (v, a, _, s) => Select(v, a, keep: false),
        ["selectattr"] = (v, a, _, s) => SelectAttribute(v, a, keep: true),
        ["rejectattr"] = (v, a, _, s) => SelectAttribute(v, a, keep: false),
        ["indent"] = Indent,
        ["wordcount"] = (v, _, _, _) => (long)Methods.Split(Text(v), null, -1).Count,
        ["min"] = (v, a, k, _) => Extreme(v, k, pickLarger: false),
        ["max"] = (v, a, k, _) => Extreme(v, k, pickLarger: true),
        ["sum"] = Sum,
    };

    public static FilterFunction? Find(string name) => All.GetValueOrDefault(name);

    private static string Text(object? value) => PythonText.Str(value);

    private static object? Optional(List<object?> args, Dictionary<string, object?>? kwargs, int index, string name) =>
        index < args.Count ? args[index] : kwargs is not null && kwargs.TryGetValue(name, out var value) ? value : null;

    private static object? Required(List<object?> args, Dictionary<string, object?>? kwargs, int index, string name) =>
        index < args.Count || (kwargs?.ContainsKey(name) ?? false) ? Optional(args, kwargs, index, name)
            : throw new TemplateRuntimeException($"missing argument '{name}'");

    private static object? Number(object? value)
    {
        Operations.FailIfUndefined(value);
        return Operations.IsNumber(value) ? value
            : throw new TemplateRuntimeException($"bad operand type: '{TemplateValues.TypeName(value)}'");
    }

    /// <summary>transformers' tojson: <c>json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
    /// sort_keys=sort_keys)</c>.</summary>
    private static object? ToJson(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        if (TemplateValues.IsTruthy(Optional(args, kwargs, 0, "ensure_ascii")))
            throw new TemplateRuntimeException("tojson(ensure_ascii=True) is not supported");
        int? indent = Optional(args, kwargs, 1, "indent") is { } i and not Undefined ? (int)Operations.AsLong(i) : null;
        string? itemSeparator = null, keySeparator = null;
        if (Optional(args, kwargs, 2, "separators") is List<object?> { Count: 2 } separators)
        {
            itemSeparator = Text(separators[0]);
            keySeparator = Text(separators[1]);
        }
        var sortKeys = TemplateValues.IsTruthy(Optional(args, kwargs, 3, "sort_keys"));
        Operations.FailIfUndefined(value);
        return PythonText.Json(value, indent, itemSeparator, keySeparator, sortKeys);
    }

    private static object? Join(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var separator = Optional(args, kwargs, 0, "d") is { } d ? Text(d) : "";
        var attribute = Optional(args, kwargs, 1, "attribute");
        var text = new StringBuilder();
        var first = true;
        foreach (var item in Operations.Iterate(value))
        {
            if (!first) text.Append(separator);
            first = false;
            PythonText.AppendStr(text, attribute is null ? item : GetPath(item, attribute));
        }
        return text.ToString();
    }

    private static object? Default(object? value, List<object?> args, Dictionary<string, object?>? kwargs,
        CallSite site)
    {
        var fallback = Optional(args, kwargs, 0, "default_value") ?? "";
        var boolean = TemplateValues.IsTruthy(Optional(args, kwargs, 1, "boolean"));
        return value is Undefined || (boolean && !TemplateValues.IsTruthy(value)) ? fallback : value;
    }

    /// <summary>jinja2's title filter: capitalise after spaces, dashes and opening brackets (so "it's" stays
    /// "It's").</summary>
    private static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        var wordStart = true;
        foreach (var c in s)
        {
            var separator = char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<';
            text.Append(separator ? c : wordStart ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            wordStart = separator;
        }
        return text.ToString();
    }

    private static object? ToInt(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var fallback = Optional(args, kwargs, 0, "default") ?? 0L;
        switch (value)
        {
            case long or bool: return Operations.AsLong(value);
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                var trimmed = s.Trim().Replace("_", "");
                if (long.TryParse(trimmed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
                    return l;
                if (double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed)
                    && double.IsFinite(parsed)) return (long)Math.Truncate(parsed);
                return fallback;
            default: return fallback;
        }
    }

    private static object? ToFloat(object? value, List<object?> args, Dictionary<string, object?>? kwargs,
        CallSite site)
    {
        var fallback = Optional(args, kwargs, 0, "default") ?? 0.0;
        return value switch
        {
            long or bool => Operations.AsDouble(value),
            double d => d,
            string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed)
                => parsed,
            _ => fallback,
        };
    }

    private static object? Round(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var precision = (int)Operations.AsLong(Optional(args, kwargs, 0, "precision") ?? 0L);
        var method = Optional(args, kwargs, 1, "method") as string ?? "common";
        var number = Operations.AsDouble(Number(value));
        var scale = Math.Pow(10, precision);
        return method switch
        {
            "common" => Math.Round(number, precision, MidpointRounding.ToEven), // Python's round(): halves go to even
            "ceil" => Math.Ceiling(number * scale) / scale,
            "floor" => Math.Floor(number * scale) / scale,
            _ => throw new TemplateRuntimeException("method must be common, ceil or floor"),
        };
    }

    /// <summary>The attribute path of a filter argument ("a.b.0"): each part looked up like <c>obj[part]</c>.</summary>
    private static object? GetPath(object? item, object? attribute)
    {
        if (attribute is not string path) return Operations.GetItem(item, attribute);
        foreach (var part in path.Split('.'))
            item = Operations.GetItem(item, long.TryParse(part, out var index) ? index : part);
        return item;
    }

    private static int CompareForSort(object? a, object? b, bool caseSensitive)
    {
        if (!caseSensitive && a is string sa && b is string sb)
            return string.CompareOrdinal(sa.ToLowerInvariant(), sb.ToLowerInvariant());
        return Operations.Compare(a, b, "<");
    }

    private static object? Sort(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var reverse = TemplateValues.IsTruthy(Optional(args, kwargs, 0, "reverse"));
        var caseSensitive = TemplateValues.IsTruthy(Optional(args, kwargs, 1, "case_sensitive"));
        var attribute = Optional(args, kwargs, 2, "attribute");
        var items = Operations.Iterate(value);
        var keyed = items.Select(item => (Key: attribute is null ? item : GetPath(item, attribute),
            Item: item)).ToList();
        // OrderBy is stable, like Python's sorted; reverse=True keeps equal items in their original order too.
        var comparer = Comparer<object?>.Create((a, b) => CompareForSort(a, b, caseSensitive));
        var sorted = reverse ? keyed.OrderByDescending(k => k.Key, comparer) : keyed.OrderBy(k => k.Key, comparer);
        return sorted.Select(k => k.Item).ToList();
    }

    private static object? DictSort(object? value, List<object?> args, Dictionary<string, object?>? kwargs,
        CallSite site)
    {
        if (value is not PyDict dict) throw new TemplateRuntimeException("dictsort needs a mapping");
        var caseSensitive = TemplateValues.IsTruthy(Optional(args, kwargs, 0, "case_sensitive"));
        var byValue = (Optional(args, kwargs, 1, "by") as string ?? "key") == "value";
        var reverse = TemplateValues.IsTruthy(Optional(args, kwargs, 2, "reverse"));
        var comparer = Comparer<object?>.Create((a, b) => CompareForSort(a, b, caseSensitive));
        var pairs = dict.Select(e => (Key: byValue ? e.Value : e.Key, Pair: (object?)new PyTuple { e.Key, e.Value }));
        var sorted = reverse ? pairs.OrderByDescending(p => p.Key, comparer) : pairs.OrderBy(p => p.Key, comparer);
        return sorted.Select(p => p.Pair).ToList();
    }

    private static object? Unique(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var caseSensitive = TemplateValues.IsTruthy(Optional(args, kwargs, 0, "case_sensitive"));
        var attribute = Optional(args, kwargs, 1, "attribute");
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var item in Operations.Iterate(value))
        {
            var key = attribute is null ? item : GetPath(item, attribute);
            if (!caseSensitive && key is string s) key = s.ToLowerInvariant();
            if (seen.Any(k => Operations.Equals(k, key))) continue;
            seen.Add(key);
            result.Add(item);
        }
        return result;
    }

    /// <summary><c>map(attribute='name')</c> or <c>map('filter', args...)</c>.</summary>
    private static object? Map(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var items = Operations.Iterate(value);
        if (kwargs is not null && kwargs.TryGetValue("attribute", out var attribute))
        {
            var hasDefault = kwargs.TryGetValue("default", out var fallback);
            return items.Select(item => GetPath(item, attribute) is Undefined && hasDefault ? fallback
                : GetPath(item, attribute)).ToList();
        }
        if (args.Count == 0 || args[0] is not string name)
            throw new TemplateRuntimeException("map needs a filter name or attribute=");
        var filter = Find(name) ?? throw new TemplateRuntimeException($"No filter named '{name}'.");
        var rest = args.Skip(1).ToList();
        return items.Select(item => filter(item, rest, null, site)).ToList();
    }

    private static bool Passes(object? item, List<object?> args, int testAt)
    {
        if (args.Count <= testAt) return TemplateValues.IsTruthy(item);
        var name = args[testAt] as string ?? throw new TemplateRuntimeException("the test name must be a string");
        var test = BuiltinTests.Find(name) ?? throw new TemplateRuntimeException($"No test named '{name}'.");
        return test(item, args.Skip(testAt + 1).ToList());
    }

    private static object? Select(object? value, List<object?> args, bool keep) =>
        Operations.Iterate(value).Where(item => Passes(item, args, 0) == keep).ToList();

    private static object? SelectAttribute(object? value, List<object?> args, bool keep)
    {
        if (args.Count == 0) throw new TemplateRuntimeException("selectattr/rejectattr need an attribute name");
        return Operations.Iterate(value).Where(item => Passes(GetPath(item, args[0]), args, 1) == keep).ToList();
    }

    private static object? Indent(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var width = Optional(args, kwargs, 0, "width") ?? 4L;
        var prefix = width is string w ? w : new string(' ', (int)Operations.AsLong(width));
        var first = TemplateValues.IsTruthy(Optional(args, kwargs, 1, "first"));
        var blank = TemplateValues.IsTruthy(Optional(args, kwargs, 2, "blank"));
        var lines = Text(value).Split('\n');
        var text = new StringBuilder();
        for (var i = 0; i < lines.Length; i++)
        {
            if (i > 0) text.Append('\n');
            var indentThis = (i > 0 || first) && (blank || lines[i].Length > 0);
            if (indentThis) text.Append(prefix);
            text.Append(lines[i]);
        }
        return text.ToString();
    }

    private static object? Extreme(object? value, Dictionary<string, object?>? kwargs, bool pickLarger)
    {
        var caseSensitive = TemplateValues.IsTruthy(kwargs?.GetValueOrDefault("case_sensitive"));
        var attribute = kwargs?.GetValueOrDefault("attribute");
        object? best = null;
        object? bestKey = null;
        var any = false;
        foreach (var item in Operations.Iterate(value))
        {
            var key = attribute is null ? item : GetPath(item, attribute);
            var comparison = any ? CompareForSort(key, bestKey, caseSensitive) : 0;
            if (!any || (pickLarger ? comparison > 0 : comparison < 0))
            {
                (best, bestKey, any) = (item, key, true);
            }
        }
        return any ? best : new Undefined("No aggregated item, sequence was empty.");
    }

    private static object? Sum(object? value, List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var attribute = Optional(args, kwargs, 0, "attribute");
        object? total = Optional(args, kwargs, 1, "start") ?? 0L;
        foreach (var item in Operations.Iterate(value))
            total = Operations.Add(total, attribute is null ? item : GetPath(item, attribute));
        return total;
    }
}
