using System.Text;

namespace FineTune.Jinja;

/// <summary>The Python str and dict methods chat templates call: <c>content.strip()</c>, <c>tool.items()</c>,
/// ...</summary>
internal static class Methods
{
    private static readonly HashSet<string> StringMethods =
    [
        "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit", "splitlines", "replace", "upper",
        "lower", "title", "capitalize", "join", "find", "rfind", "count", "format", "isdigit", "isalpha", "isspace",
        "isupper", "islower",
    ];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];

    public static bool IsStringMethod(string name) => StringMethods.Contains(name);
    public static bool IsDictMethod(string name) => DictMethods.Contains(name);

    public static object? Call(object target, string name, List<object?> args, Dictionary<string, object?>? kwargs)
        => target switch
    {
        string s => CallString(s, name, args, kwargs),
        PyDict dict => CallDict(dict, name, args),
        _ => throw new TemplateRuntimeException($"'{TemplateValues.TypeName(target)}' object has no method '{name}'"),
    };

    private static object? CallDict(PyDict dict, string name, List<object?> args)
    {
        switch (name)
        {
            case "items":
                return dict.Select(e => (object?)new PyTuple { e.Key, e.Value }).ToList();
            case "keys":
                return dict.Keys.Cast<object?>().ToList();
            case "values":
                return dict.Values.ToList();
            case "get":
                Expect(name, args, 1, 2);
                return args[0] is not null && dict.TryGetValue(args[0]!, out var value) ? value : args.Count > 1
                    ? args[1] : null;
            default:
                throw new TemplateRuntimeException($"'dict' object has no method '{name}'");
        }
    }

    private static object? CallString(string s, string name, List<object?> args, Dictionary<string, object?>? kwargs)
    {
        switch (name)
        {
            case "strip": Expect(name, args, 0, 1); return Strip(s, CharsArg(args), start: true, end: true);
            case "lstrip": Expect(name, args, 0, 1); return Strip(s, CharsArg(args), start: true, end: false);
            case "rstrip": Expect(name, args, 0, 1); return Strip(s, CharsArg(args), start: false, end: true);
            case "startswith": Expect(name, args, 1, 1);
                return AnyAffix(args[0], p => s.StartsWith(p, StringComparison.Ordinal));
            case "endswith": Expect(name, args, 1, 1);
                return AnyAffix(args[0], p => s.EndsWith(p, StringComparison.Ordinal));
            case "split": return Split(s, SeparatorArg(args, kwargs), MaxSplitArg(args, kwargs));
            case "rsplit": return RSplit(s, SeparatorArg(args, kwargs), MaxSplitArg(args, kwargs));
            case "splitlines": return SplitLines(s);
            case "replace":
                Expect(name, args, 2, 3);
                return Replace(s, StringArg(name, args[0]), StringArg(name, args[1]),
                    args.Count > 2 ? Operations.AsLong(args[2]) : -1);
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Title(s);
            case "capitalize": return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
            case "join":
                Expect(name, args, 1, 1);
                return string.Join(s, Operations.Iterate(args[0]).Select(item => item as string
                    ?? throw new TemplateRuntimeException($"sequence item: expected str instance, " +
                        $"{TemplateValues.TypeName(item)} found")));
            case "find": Expect(name, args, 1, 1);
                return (long)s.IndexOf(StringArg(name, args[0]), StringComparison.Ordinal);
            case "rfind": Expect(name, args, 1, 1);
                return (long)s.LastIndexOf(StringArg(name, args[0]), StringComparison.Ordinal);
            case "count": Expect(name, args, 1, 1); return CountOccurrences(s, StringArg(name, args[0]));
            case "format": return Format(s, args, kwargs);
            case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "isupper": return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            case "islower": return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            default: throw new TemplateRuntimeException($"'str' object has no method '{name}'");
        }
    }

    private static void Expect(string name, List<object?> args, int min, int max)
    {
        if (args.Count < min || args.Count > max)
            throw new TemplateRuntimeException(min == max
                ? $"{name}() takes exactly {min} argument{(min == 1 ? "" : "s")} ({args.Count} given)"
                : $"{name}() takes {min} to {max} arguments ({args.Count} given)");
    }

    private static string StringArg(string name, object? value) =>
        value as string
            ?? throw new TemplateRuntimeException(
                $"{name}() argument must be str, not {TemplateValues.TypeName(value)}");

    private static string? CharsArg(List<object?> args) => args.Count == 0 || args[0] is null ? null
        : StringArg("strip", args[0]);

    private static bool AnyAffix(object? affix, Func<string, bool> test) => affix switch
    {
        string s => test(s),
        List<object?> options => options.Any(o => test(StringArg("startswith", o))),
        _ => throw new TemplateRuntimeException($"startswith first arg must be str or a tuple of str, not " +
            $"{TemplateValues.TypeName(affix)}"),
    };

    /// <summary>str.strip: whitespace when no characters are given, else any of the given characters.</summary>
    public static string Strip(string s, string? chars, bool start, bool end)
    {
        var from = 0;
        var to = s.Length;
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);
        if (start) while (from < to && Strippable(s[from])) from++;
        if (end) while (to > from && Strippable(s[to - 1])) to--;
        return from == 0 && to == s.Length ? s : s[from..to];
    }

    private static string? SeparatorArg(List<object?> args, Dictionary<string, object?>? kwargs)
    {
        var sep = args.Count > 0 ? args[0] : kwargs?.GetValueOrDefault("sep");
        if (sep is null) return null;
        var separator = StringArg("split", sep);
        if (separator.Length == 0) throw new TemplateRuntimeException("empty separator");
        return separator;
    }

    private static long MaxSplitArg(List<object?> args, Dictionary<string, object?>? kwargs)
    {
        var max = args.Count > 1 ? args[1] : kwargs?.GetValueOrDefault("maxsplit");
        return max is null ? -1 : Operations.AsLong(max);
    }

    /// <summary>str.split: by a separator (empty pieces kept) or, without one, by runs of whitespace (ends
    /// ignored).</summary>
    public static List<object?> Split(string s, string? separator, long maxSplit)
    {
        var parts = new List<object?>();
        if (separator is not null)
        {
            var start = 0;
            while (maxSplit < 0 || parts.Count < maxSplit)
            {
                var at = s.IndexOf(separator, start, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Add(s[start..at]);
                start = at + separator.Length;
            }
            parts.Add(s[start..]);
            return parts;
        }
        var i = 0;
        while (true)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) break;
            if (maxSplit >= 0 && parts.Count == maxSplit)
            {
                parts.Add(s[i..].TrimEnd());
                break;
            }
            var wordStart = i;
            while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
            parts.Add(s[wordStart..i]);
        }
        return parts;
    }

    private static List<object?> RSplit(string s, string? separator, long maxSplit)
    {
        if (maxSplit < 0) return Split(s, separator, maxSplit);
        if (separator is null) throw new TemplateRuntimeException("rsplit() with maxsplit needs a separator here");
        var parts = new List<object?>();
        var end = s.Length;
        while (parts.Count < maxSplit)
        {
            var at = end == 0 ? -1 : s.LastIndexOf(separator, end - 1, StringComparison.Ordinal);
            if (at < 0 || at + separator.Length > end) break;
            parts.Insert(0, s[(at + separator.Length)..end]);
            end = at;
        }
        parts.Insert(0, s[..end]);
        return parts;
    }

    private static List<object?> SplitLines(string s)
    {
        var lines = s.Replace("\r\n", "\n").Split('\n', '\r').Select(l => (object?)l).ToList();
        if (s.Length == 0 || s.EndsWith('\n') || s.EndsWith('\r')) lines.RemoveAt(lines.Count - 1);
        return lines;
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertBetweenAll(s, replacement)
            : s.Replace(old, replacement, StringComparison.Ordinal);
        var text = new StringBuilder();
        var start = 0;
        for (var n = 0; n < count; n++)
        {
            var at = s.IndexOf(old, start, StringComparison.Ordinal);
            if (at < 0 || old.Length == 0) break;
            text.Append(s, start, at - start).Append(replacement);
            start = at + old.Length;
        }
        return text.Append(s, start, s.Length - start).ToString();
    }

    private static string InsertBetweenAll(string s, string insert) =>
        insert + string.Concat(Operations.CodePoints(s).Select(c => (string)c! + insert));

    private static long CountOccurrences(string s, string sub)
    {
        if (sub.Length == 0) return Operations.Length(s) + 1;
        long count = 0;
        for (var at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0;
            at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    /// <summary>Python's str.title: upper-case a letter after a non-letter, lower-case the others.</summary>
    public static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        var previousIsLetter = false;
        foreach (var c in s)
        {
            text.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }
        return text.ToString();
    }

    /// <summary>str.format with "{}", "{0}" and "{name}" fields (no format specs), "{{" and "}}" escapes.</summary>
    private static string Format(string s, List<object?> args, Dictionary<string, object?>? kwargs)
    {
        var text = new StringBuilder();
        var autoIndex = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { text.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { text.Append('}'); i++; continue; }
            if (c != '{') { text.Append(c); continue; }
            var close = s.IndexOf('}', i);
            if (close < 0) throw new TemplateRuntimeException("Single '{' encountered in format string");
            var field = s[(i + 1)..close];
            object? value;
            if (field.Length == 0) value = autoIndex < args.Count ? args[autoIndex++]
                : throw new TemplateRuntimeException("Replacement index out of range");
            else if (int.TryParse(field, out var index)) value = index < args.Count ? args[index]
                : throw new TemplateRuntimeException("Replacement index out of range");
            else if (kwargs is not null && kwargs.TryGetValue(field, out var named)) value = named;
            else throw new TemplateRuntimeException($"format field '{field}' is not supported or missing");
            PythonText.AppendStr(text, value);
            i = close;
        }
        return text.ToString();
    }
}
