using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace FineTune.Core.Pipeline;

/// <summary>
/// The one description of what a settings class holds: YAML key names, types, defaults and bounds. The loader,
/// the JSON Schema and the lock file all read settings through this, so they cannot disagree.
/// </summary>
internal static class SettingsReflection
{
    public sealed record SettingProperty(PropertyInfo Property, string Key)
    {
        public Type Type => Property.PropertyType;
        public string? Doc => Property.GetCustomAttribute<DocAttribute>()?.Text;
        public bool IsRequired => Property.GetCustomAttribute<RequiredSettingAttribute>() is not null;
        public RangeAttribute? Range => Property.GetCustomAttribute<RangeAttribute>();
        public string[]? OneOf => Property.GetCustomAttribute<OneOfAttribute>()?.Values;
        public bool SurvivesResume => Property.GetCustomAttribute<SurvivesResumeAttribute>() is not null;
    }

    public static IReadOnlyList<SettingProperty> PropertiesOf(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.GetCustomAttribute<NotASettingAttribute>() is null)
            .Select(p => new SettingProperty(p, ToSnakeCase(p.Name)))
            .ToList();

    public static string ToSnakeCase(string name)
    {
        var builder = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsUpper(c))
            {
                if (i > 0 && (char.IsLower(name[i - 1]) || char.IsDigit(name[i - 1]))) builder.Append('_');
                builder.Append(char.ToLowerInvariant(c));
            }
            else builder.Append(c);
        }
        return builder.ToString();
    }

    public static bool IsSettingsObject(Type type) =>
        type.IsClass && type != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(type);

    /// <summary>
    /// The settings as an ordered tree of plain values (string, long, double, bool, lists, nested dictionaries),
    /// keys in declaration order. Feeds stage keys (hashed as canonical JSON) and the lock file.
    /// </summary>
    public static SortedDictionary<string, object?> ToPlainTree(object settings)
    {
        var tree = new SortedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var property in PropertiesOf(settings.GetType()))
            tree[property.Key] = ToPlainValue(property.Property.GetValue(settings));
        return tree;
    }

    public static object? ToPlainValue(object? value) => value switch
    {
        null => null,
        string s => s,
        bool b => b,
        int i => (long)i,
        long l => l,
        double d => d,
        IDictionary map => new SortedDictionary<string, object?>(map.Keys.Cast<object>()
            .ToDictionary(k => k.ToString()!, k => ToPlainValue(map[k])), StringComparer.Ordinal),
        IEnumerable list => list.Cast<object?>().Select(ToPlainValue).ToList(),
        float f => (double)f,
        _ when IsSettingsObject(value.GetType()) => ToPlainTree(value),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture),
    };

    /// <summary>A value as people write it in YAML and read it in "settings changed: lr 0.0001 -> 0.0002".</summary>
    public static string Display(object? value) => value switch
    {
        null => "null",
        string s => s,
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        long l => l.ToString(CultureInfo.InvariantCulture),
        IDictionary<string, object?> map => "{" + string.Join(", ",
            map.Select(kv => kv.Key + ": " + Display(kv.Value))) + "}",
        IEnumerable list => "[" + string.Join(", ", list.Cast<object?>().Select(Display)) + "]",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
    };

    /// <summary>Flattens a plain tree into dotted keys: {"lr": 1, "builtin": {"layers": 4}} -> lr,
    /// builtin.layers.</summary>
    public static SortedDictionary<string, object?> Flatten(IDictionary<string, object?> tree, string prefix = "")
    {
        var flat = new SortedDictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in tree)
        {
            if (value is IDictionary<string, object?> nested)
                foreach (var (k, v) in Flatten(nested, prefix + key + ".")) flat[k] = v;
            else flat[prefix + key] = value;
        }
        return flat;
    }
}
