using System.Globalization;
using System.Text;

namespace FineTune.Jinja;

/// <summary>
/// How Python turns values into text: <c>str()</c> (what <c>{{ x }}</c> prints), <c>repr()</c> (items inside printed
/// lists and dicts) and <c>json.dumps</c> (transformers' <c>tojson</c> filter, with ensure_ascii=False).
/// </summary>
internal static class PythonText
{
    public static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    public static string Repr(object? value)
    {
        var text = new StringBuilder();
        AppendRepr(text, value);
        return text.ToString();
    }

    public static void AppendStr(StringBuilder text, object? value)
    {
        switch (value)
        {
            case string s: text.Append(s); break;
            case Undefined: break;
            default: AppendRepr(text, value); break;
        }
    }

    private static void AppendRepr(StringBuilder text, object? value)
    {
        switch (value)
        {
            case null: text.Append("None"); break;
            case bool b: text.Append(b ? "True" : "False"); break;
            case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: text.Append(Float(d)); break;
            case string s: AppendStringRepr(text, s); break;
            case Undefined: break;
            case List<object?> list:
                var isTuple = list is PyTuple;
                text.Append(isTuple ? '(' : '[');
                for (var i = 0; i < list.Count; i++)
                {
                    if (i > 0) text.Append(", ");
                    AppendRepr(text, list[i]);
                }
                text.Append(isTuple ? (list.Count == 1 ? ",)" : ")") : "]");
                break;
            case PyDict dict:
                text.Append('{');
                var first = true;
                foreach (var (key, item) in dict)
                {
                    if (!first) text.Append(", ");
                    first = false;
                    AppendRepr(text, key);
                    text.Append(": ");
                    AppendRepr(text, item);
                }
                text.Append('}');
                break;
            case Namespace: text.Append("<Namespace>"); break;
            default: text.Append('<').Append(TemplateValues.TypeName(value)).Append('>'); break;
        }
    }

    /// <summary>Python's float repr: shortest round-trip digits; positional from 1e-4 up to 1e16, scientific
    /// outside.</summary>
    public static string Float(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";

        // .NET's "R" gives the same shortest digits as Python but switches to exponents at other thresholds,
        // so split it into digits and a decimal exponent and lay them out the Python way.
        var shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
        var exponentAt = shortest.IndexOf('E');
        var mantissa = exponentAt < 0 ? shortest : shortest[..exponentAt];
        var exponent = exponentAt < 0 ? 0 : int.Parse(shortest[(exponentAt + 1)..], CultureInfo.InvariantCulture);
        var point = mantissa.IndexOf('.');
        var digits = point < 0 ? mantissa : mantissa.Remove(point, 1);
        // digits[..pointPosition] is the integer part
        var pointPosition = (point < 0 ? mantissa.Length : point) + exponent;
        var leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.TrimStart('0');
        pointPosition -= leadingZeros;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var scientificExponent = pointPosition - 1;
        var sign = d < 0 ? "-" : "";

        if (scientificExponent < -4 || scientificExponent >= 16)
        {
            var body = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            return $"{sign}{body}e{(scientificExponent < 0 ? '-' : '+')}{Math.Abs(scientificExponent):00}";
        }
        if (pointPosition <= 0) return sign + "0." + new string('0', -pointPosition) + digits;
        if (pointPosition >= digits.Length)
            return sign + digits + new string('0', pointPosition - digits.Length) + ".0";
        return sign + digits[..pointPosition] + "." + digits[pointPosition..];
    }

    private static void AppendStringRepr(StringBuilder text, string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        text.Append(quote);
        foreach (var c in s)
        {
            switch (c)
            {
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                default:
                    if (c == quote) text.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f)
                        text.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else text.Append(c);
                    break;
            }
        }
        text.Append(quote);
    }

    /// <summary>
    /// <c>json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sortKeys)</c>.
    /// Python's defaults: separators (", ", ": ") without indent, (",", ": ") with it.
    /// </summary>
    public static string Json(object? value, int? indent = null, string? itemSeparator = null,
        string? keySeparator = null, bool sortKeys = false)
    {
        var text = new StringBuilder();
        var writer = new JsonWriter(text, indent, itemSeparator ?? (indent is null ? ", " : ","), keySeparator ?? ": ",
            sortKeys);
        writer.Write(value, 0);
        return text.ToString();
    }

    private sealed class JsonWriter(StringBuilder text, int? indent, string itemSeparator, string keySeparator,
        bool sortKeys)
    {
        public void Write(object? value, int depth)
        {
            switch (value)
            {
                case null: text.Append("null"); break;
                case bool b: text.Append(b ? "true" : "false"); break;
                case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d:
                    text.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity"
                        : double.IsNegativeInfinity(d) ? "-Infinity" : Float(d));
                    break;
                case string s: WriteString(s); break;
                case List<object?> list:
                    if (list.Count == 0) { text.Append("[]"); break; }
                    text.Append('[');
                    for (var i = 0; i < list.Count; i++)
                    {
                        if (i > 0) text.Append(itemSeparator);
                        NewLine(depth + 1);
                        Write(list[i], depth + 1);
                    }
                    NewLine(depth);
                    text.Append(']');
                    break;
                case PyDict dict:
                    if (dict.Count == 0) { text.Append("{}"); break; }
                    text.Append('{');
                    IEnumerable<KeyValuePair<object, object?>> entries = sortKeys
                        ? dict.OrderBy(e => PythonText.Str(e.Key), StringComparer.Ordinal)
                        : dict;
                    var first = true;
                    foreach (var (key, item) in entries)
                    {
                        if (!first) text.Append(itemSeparator);
                        first = false;
                        NewLine(depth + 1);
                        WriteKey(key);
                        text.Append(keySeparator);
                        Write(item, depth + 1);
                    }
                    NewLine(depth);
                    text.Append('}');
                    break;
                case Namespace ns:
                    throw new TemplateRuntimeException("Object of type Namespace is not JSON serializable");
                default:
                    throw new TemplateRuntimeException($"Object of type {TemplateValues.TypeName(value)} is not JSON " +
                        $"serializable");
            }
        }

        private void WriteKey(object key)
        {
            // json.dumps turns non-string keys into strings: 1 -> "1", True -> "true", None -> "null".
            switch (key)
            {
                case string s: WriteString(s); break;
                case bool b: WriteString(b ? "true" : "false"); break;
                case long l: WriteString(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: WriteString(Float(d)); break;
                default: throw new TemplateRuntimeException($"keys must be str, int, float, bool or None, not " +
                    $"{TemplateValues.TypeName(key)}");
            }
        }

        private void NewLine(int depth)
        {
            if (indent is not int spaces) return;
            text.Append('\n').Append(' ', spaces * depth);
        }

        private void WriteString(string s)
        {
            text.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': text.Append("\\\""); break;
                    case '\\': text.Append("\\\\"); break;
                    case '\n': text.Append("\\n"); break;
                    case '\r': text.Append("\\r"); break;
                    case '\t': text.Append("\\t"); break;
                    case '\b': text.Append("\\b"); break;
                    case '\f': text.Append("\\f"); break;
                    default:
                        if (c < 0x20) text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else text.Append(c);
                        break;
                }
            }
            text.Append('"');
        }
    }
}
