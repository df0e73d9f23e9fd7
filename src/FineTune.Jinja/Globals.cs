using System.Globalization;
using System.Text;

namespace FineTune.Jinja;

/// <summary>
/// Functions every template can call: jinja2's <c>range</c>, <c>namespace</c>, <c>dict</c>, and the two transformers
/// adds for chat templates, <c>raise_exception(message)</c> and <c>strftime_now(format)</c>.
/// </summary>
internal static class Globals
{
    public static readonly IReadOnlyDictionary<string, object?> All =
        new Dictionary<string, object?>(StringComparer.Ordinal)
    {
        ["range"] = new BuiltinFunction("range", Range),
        ["namespace"] = new BuiltinFunction("namespace", NewNamespace),
        ["dict"] = new BuiltinFunction("dict", (_, kwargs, _) => ToDict(kwargs)),
        ["raise_exception"] = new BuiltinFunction("raise_exception", RaiseException),
        ["strftime_now"] = new BuiltinFunction("strftime_now",
            (args, _, _) => StrFTime(DateTime.Now, args.Count > 0 ? PythonText.Str(args[0]) : "")),
    };

    private static PyDict ToDict(Dictionary<string, object?>? kwargs)
    {
        var dict = new PyDict();
        if (kwargs is not null)
            foreach (var (key, value) in kwargs) dict[key] = value;
        return dict;
    }

    private static object? Range(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        long start = 0, stop, step = 1;
        switch (args.Count)
        {
            case 1: stop = Operations.AsLong(args[0]); break;
            case 2: (start, stop) = (Operations.AsLong(args[0]), Operations.AsLong(args[1])); break;
            case 3: (start, stop, step) = (Operations.AsLong(args[0]), Operations.AsLong(args[1]),
                Operations.AsLong(args[2])); break;
            default: throw new TemplateRuntimeException($"range expected 1 to 3 arguments, got {args.Count}");
        }
        if (step == 0) throw new TemplateRuntimeException("range() arg 3 must not be zero");
        var items = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            // The same cap as jinja2's sandbox (MAX_RANGE), so a bad template cannot eat the memory.
            if (items.Count >= 100_000)
                throw new TemplateRuntimeException("range too big, maximum size for range is 100000");
            items.Add(i);
        }
        return items;
    }

    private static object? NewNamespace(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var ns = new Namespace();
        foreach (var arg in args)
        {
            if (arg is not PyDict initial)
                throw new TemplateRuntimeException("namespace() takes keyword arguments or a dict");
            foreach (var (key, value) in initial) ns.Attributes[PythonText.Str(key)] = value;
        }
        if (kwargs is not null)
            foreach (var (key, value) in kwargs) ns.Attributes[key] = value;
        return ns;
    }

    /// <summary>transformers' raise_exception: the template author's message, verbatim, at the call site.</summary>
    private static object? RaiseException(List<object?> args, Dictionary<string, object?>? kwargs, CallSite site)
    {
        var message = args.Count > 0 ? PythonText.Str(args[0]) : "";
        throw site.Context.Source.Error(JinjaErrorKind.Raised, message, site.Offset);
    }

    private static readonly string[] ShortDays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    private static readonly string[] LongDays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
        "Saturday"];
    private static readonly string[] ShortMonths = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
        "Oct", "Nov", "Dec"];
    private static readonly string[] LongMonths = ["January", "February", "March", "April", "May", "June", "July",
        "August", "September", "October", "November", "December"];

    /// <summary>Python's strftime for the C locale, with the directives date strings in templates use.</summary>
    public static string StrFTime(DateTime time, string format)
    {
        var text = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            var directive = format[++i];
            text.Append(directive switch
            {
                'd' => time.Day.ToString("00", CultureInfo.InvariantCulture),
                'm' => time.Month.ToString("00", CultureInfo.InvariantCulture),
                'Y' => time.Year.ToString("0000", CultureInfo.InvariantCulture),
                'y' => (time.Year % 100).ToString("00", CultureInfo.InvariantCulture),
                'H' => time.Hour.ToString("00", CultureInfo.InvariantCulture),
                'I' => ((time.Hour + 11) % 12 + 1).ToString("00", CultureInfo.InvariantCulture),
                'M' => time.Minute.ToString("00", CultureInfo.InvariantCulture),
                'S' => time.Second.ToString("00", CultureInfo.InvariantCulture),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'j' => time.DayOfYear.ToString("000", CultureInfo.InvariantCulture),
                'a' => ShortDays[(int)time.DayOfWeek],
                'A' => LongDays[(int)time.DayOfWeek],
                'b' or 'h' => ShortMonths[time.Month - 1],
                'B' => LongMonths[time.Month - 1],
                '%' => "%",
                _ => "%" + directive,
            });
        }
        return text.ToString();
    }
}
