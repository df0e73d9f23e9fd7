using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Pipeline;

/// <summary>
/// Reads a pipeline file into a <see cref="PipelineDefinition"/>: YAML with positions, <c>extends:</c> bases,
/// <c>--set</c> overrides, <c>${param}</c> interpolation, then binding to the typed settings and validation.
/// Every problem is collected, so one run of <c>validate</c> reports them all.
/// </summary>
internal static partial class PipelineLoader
{
    public const string CommandLineFile = "<command line>";

    public sealed record Result(PipelineDefinition? Pipeline, IReadOnlyList<Diagnostic> Diagnostics)
    {
        public bool HasErrors => Diagnostics.Any(d => d.Severity == Severity.Error);
    }

    public static Result Load(string path, IReadOnlyList<string>? overrides = null)
    {
        var diagnostics = new List<Diagnostic>();
        var fullPath = Path.GetFullPath(path);
        var sourceFiles = new List<string>();
        var root = ReadWithBases(fullPath, sourceFiles, diagnostics, null);
        if (root is null) return new Result(null, diagnostics);

        foreach (var assignment in overrides ?? []) ApplyOverride(root, assignment, diagnostics);
        Interpolate(root, diagnostics);

        var locations = new Dictionary<string, SourceLocation>(StringComparer.Ordinal);
        var pipeline = new PipelineDefinition { FilePath = fullPath, SourceFiles = sourceFiles };
        Bind(root, pipeline, "", locations, diagnostics);
        pipeline.SourceMap = key => LocateIn(locations, key, fullPath);

        if (!diagnostics.Any(d => d.Severity == Severity.Error))
            Validate(pipeline, locations, diagnostics);
        return new Result(diagnostics.Any(d => d.Severity == Severity.Error) ? null : pipeline, diagnostics);
    }

    /// <summary>Loads or throws a <see cref="FineTuneException"/> carrying every diagnostic.</summary>
    public static PipelineDefinition LoadOrThrow(string path, IReadOnlyList<string>? overrides = null)
    {
        var result = Load(path, overrides);
        return result.Pipeline ?? throw new FineTuneException(result.Diagnostics);
    }

    private static YMap? ReadWithBases(string path, List<string> chain, List<Diagnostic> diagnostics,
        SourceLocation? referencedFrom)
    {
        if (!File.Exists(path))
        {
            diagnostics.Add(referencedFrom is null
                ? Diagnostic.Error(DiagnosticCodes.PipelineFileNotFound, $"pipeline file '{path}' does not exist")
                : referencedFrom.Error(DiagnosticCodes.PipelineFileNotFound,
                    $"base pipeline '{path}' does not exist; fix the path in 'extends' (it is relative to this file)"));
            return null;
        }
        if (chain.Contains(path))
        {
            diagnostics.Add(referencedFrom!.Error(DiagnosticCodes.ExtendsCycle,
                "'extends' forms a cycle: " + string.Join(" -> ", chain.Append(path).Select(Path.GetFileName))));
            return null;
        }
        chain.Add(path);
        var node = YamlTree.Parse(File.ReadAllText(path), path, diagnostics);
        if (node is null) return null;
        if (node is not YMap map)
        {
            diagnostics.Add(node.Location.Error(DiagnosticCodes.WrongValueType,
                $"a pipeline file must be a mapping of keys (name, params, stages), found {node.KindName}"));
            return null;
        }
        if (map["extends"] is not YScalar { IsNull: false } extends) return map;

        var basePath = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, extends.Value));
        var baseMap = ReadWithBases(basePath, chain, diagnostics, extends.Location);
        if (baseMap is null) return null;
        // The base's own store and name are inherited unless this file sets them.
        return (YMap)YamlTree.Merge(baseMap, map);
    }

    private static void ApplyOverride(YMap root, string assignment, List<Diagnostic> diagnostics)
    {
        var equals = assignment.IndexOf('=');
        if (equals <= 0)
        {
            diagnostics.Add(Diagnostic.Error(DiagnosticCodes.MalformedSetArgument,
                $"--set '{assignment}' must have the form stage.key=value (for example --set " +
                $"train.learning_rate=2e-4)"));
            return;
        }
        var keyPath = assignment[..equals].Trim();
        var source = $"{CommandLineFile} --set {keyPath}";
        var value = YamlTree.Parse(assignment[(equals + 1)..], source, diagnostics);
        if (value is null) return;
        var segments = keyPath.Split('.');
        if (StagesSettings.Names.Contains(segments[0])) segments = ["stages", .. segments];

        var current = root;
        for (var i = 0; i < segments.Length - 1; i++)
        {
            var next = current[segments[i]];
            if (next is not YMap nextMap)
            {
                nextMap = new YMap { File = source };
                current.Set(new YScalar { File = source, Value = segments[i] }, nextMap);
            }
            current = nextMap;
        }
        current.Set(new YScalar { File = source, Value = segments[^1] }, value);
    }

    [GeneratedRegex(@"\$\$\{|\$\{([^}]*)\}")]
    private static partial Regex Placeholder();

    private static void Interpolate(YMap root, List<Diagnostic> diagnostics)
    {
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root["params"] is YMap paramMap)
            foreach (var (key, value) in paramMap.Entries)
                if (value is YScalar scalar) parameters[key.Value] = scalar.Value;

        void Visit(YNode node)
        {
            switch (node)
            {
                case YScalar scalar when scalar.Value.Contains('$'):
                    scalar.Value = Placeholder().Replace(scalar.Value, match =>
                    {
                        if (match.Value == "$${") return "${";
                        var name = match.Groups[1].Value.Trim();
                        if (name.StartsWith("params.", StringComparison.Ordinal)) name = name["params.".Length..];
                        if (parameters.TryGetValue(name, out var replacement)) return replacement;
                        scalar.AlreadyReported = true;
                        var suggestion = DidYouMean.Suggest(name, parameters.Keys);
                        diagnostics.Add(scalar.Location.Error(DiagnosticCodes.UnknownParameter,
                            $"unknown parameter '${{{name}}}'" +
                            (suggestion is null ? "; define it under 'params:'"
                                : $"; did you mean '${{{suggestion}}}'?")));
                        return match.Value;
                    });
                    break;
                case YMap map:
                    foreach (var entry in map.Entries) if (entry.Key.Value != "params") Visit(entry.Value);
                    break;
                case YSequence sequence:
                    foreach (var item in sequence.Items) Visit(item);
                    break;
            }
        }
        Visit(root);
    }

    private static void Bind(YMap map, object target, string prefix, Dictionary<string, SourceLocation> locations,
        List<Diagnostic> diagnostics)
    {
        var properties = SettingsReflection.PropertiesOf(target.GetType());
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, value) in map.Entries)
        {
            var keyPath = prefix + key.Value;
            var property = properties.FirstOrDefault(p => p.Key == key.Value);
            if (property is null)
            {
                var suggestion = DidYouMean.Suggest(key.Value, properties.Select(p => p.Key));
                var section = prefix.Length == 0 ? "at the top level" : "in " + SectionName(prefix);
                diagnostics.Add(key.Location.Error(DiagnosticCodes.UnknownKey, $"unknown key '{key.Value}' {section}" +
                    (suggestion is null ? $"; expected one of: {string.Join(", ", properties.Select(p => p.Key))}"
                        : $"; did you mean '{suggestion}'?")));
                continue;
            }
            seen.Add(property.Key);
            locations[keyPath] = value is YScalar ? value.Location : key.Location;
            if (!TryConvert(value, property.Type, property.Property.GetValue(target), keyPath, locations, diagnostics,
                out var converted)) continue;
            if (converted is null && value is YScalar { IsNull: true } && !IsNullable(property.Property))
            {
                diagnostics.Add(value.Location.Error(DiagnosticCodes.WrongValueType,
                    $"'{DisplayKey(keyPath)}' needs a value"));
                continue;
            }
            if (!CheckValue(property, converted, keyPath, value.Location, diagnostics)) continue;
            property.Property.SetValue(target, converted);
        }
        foreach (var property in properties.Where(p => p.IsRequired && !seen.Contains(p.Key)))
            diagnostics.Add(map.Location.Error(DiagnosticCodes.MissingRequiredSetting,
                $"missing required setting '{prefix + property.Key}'" +
                (property.Doc is null ? "" : $" ({property.Doc})")));
    }

    private static bool IsNullable(PropertyInfo property) =>
        Nullable.GetUnderlyingType(property.PropertyType) is not null
        || new NullabilityInfoContext().Create(property).WriteState == NullabilityState.Nullable;

    private static bool TryConvert(YNode node, Type type, object? existing, string keyPath,
        Dictionary<string, SourceLocation> locations, List<Diagnostic> diagnostics, out object? result)
    {
        result = null;
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (node is YScalar { IsNull: true }) return true;
        if (node is YScalar { AlreadyReported: true }) return false;

        bool Fail(string expected)
        {
            var found = node is YScalar s ? $"'{s.Value}'" : node.KindName;
            diagnostics.Add(node.Location.Error(DiagnosticCodes.WrongValueType,
                $"'{DisplayKey(keyPath)}' must be {expected}, found {found}"));
            return false;
        }

        if (underlying == typeof(string))
        {
            if (node is not YScalar text) return Fail("text");
            result = text.Value;
            return true;
        }
        if (underlying == typeof(int) || underlying == typeof(long))
        {
            if (node is not YScalar number || !long.TryParse(number.Value.Replace("_", ""),
                NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed))
                return Fail("a whole number");
            if (underlying == typeof(int) && parsed is > int.MaxValue or < int.MinValue)
                return Fail("a whole number that fits in 32 bits");
            result = underlying == typeof(int) ? (object)(int)parsed : parsed;
            return true;
        }
        if (underlying == typeof(double))
        {
            if (node is not YScalar number || !double.TryParse(number.Value.Replace("_", ""), NumberStyles.Float,
                CultureInfo.InvariantCulture, out var parsed) || !double.IsFinite(parsed))
                return Fail("a number");
            result = parsed;
            return true;
        }
        if (underlying == typeof(bool))
        {
            if (node is YScalar { Value: "true" or "True" or "TRUE" or "yes" or "on" }) { result = true; return true; }
            if (node is YScalar { Value: "false" or "False" or "FALSE" or "no" or "off" })
            {
                result = false;
                return true;
            }
            return Fail("true or false");
        }
        if (underlying == typeof(List<string>))
        {
            if (node is YScalar single) { result = new List<string> { single.Value }; return true; }
            if (node is not YSequence sequence) return Fail("a list");
            var list = new List<string>();
            var ok = true;
            for (var i = 0; i < sequence.Items.Count; i++)
            {
                if (sequence.Items[i] is YScalar item) list.Add(item.Value);
                else { diagnostics.Add(sequence.Items[i].Location.Error(DiagnosticCodes.WrongValueType,
                    $"item {i + 1} of '{DisplayKey(keyPath)}' must be text, found " +
                    $"{sequence.Items[i].KindName}")); ok = false; }
            }
            result = list;
            return ok;
        }
        if (underlying == typeof(Dictionary<string, string>))
        {
            if (node is not YMap map) return Fail("a mapping of names to values");
            var dictionary = new Dictionary<string, string>(StringComparer.Ordinal);
            var ok = true;
            foreach (var (key, value) in map.Entries)
            {
                if (value is YScalar scalar) dictionary[key.Value] = scalar.Value;
                else { diagnostics.Add(value.Location.Error(DiagnosticCodes.WrongValueType,
                    $"'{DisplayKey(keyPath)}.{key.Value}' must be a single value, found " +
                    $"{value.KindName}")); ok = false; }
                locations[keyPath + "." + key.Value] = value.Location;
            }
            result = dictionary;
            return ok;
        }
        if (SettingsReflection.IsSettingsObject(underlying))
        {
            if (node is not YMap map) return Fail("a mapping of settings");
            var target = existing ?? Activator.CreateInstance(underlying)!;
            Bind(map, target, keyPath + ".", locations, diagnostics);
            result = target;
            return true;
        }
        throw new NotSupportedException($"settings of type {type} are not supported by the loader");
    }

    private static bool CheckValue(SettingsReflection.SettingProperty property, object? value, string keyPath,
        SourceLocation location, List<Diagnostic> diagnostics)
    {
        if (value is null) return true;
        if (property.OneOf is { } allowed && value is string text && !allowed.Contains(text))
        {
            var suggestion = DidYouMean.Suggest(text, allowed);
            diagnostics.Add(location.Error(DiagnosticCodes.ValueNotAllowed,
                $"'{DisplayKey(keyPath)}' is '{text}'; expected one of: {string.Join(", ", allowed)}" +
                (suggestion is null ? "" : $"; did you mean '{suggestion}'?")));
            return false;
        }
        if (property.Range is { } range && value is int or long or double)
        {
            var number = Convert.ToDouble(value, CultureInfo.InvariantCulture);
            string? problem = null;
            if (range.ExclusiveMinimum ? number <= range.Minimum : number < range.Minimum)
                problem = (range.ExclusiveMinimum ? "greater than " : "at least ") + Show(range.Minimum);
            else if (range.ExclusiveMaximum ? number >= range.Maximum : number > range.Maximum)
                problem = (range.ExclusiveMaximum ? "less than " : "at most ") + Show(range.Maximum);
            if (problem is not null)
            {
                diagnostics.Add(location.Error(DiagnosticCodes.ValueOutOfRange,
                    $"'{DisplayKey(keyPath)}' must be {problem}, found " +
                    $"{SettingsReflection.Display(
                        value is double d ? d : Convert.ToInt64(value, CultureInfo.InvariantCulture))}"));
                return false;
            }
        }
        return true;
    }

    private static string Show(double bound) => bound.ToString("R", CultureInfo.InvariantCulture);

    private static void Validate(PipelineDefinition pipeline, Dictionary<string, SourceLocation> locations,
        List<Diagnostic> diagnostics)
    {
        if (string.IsNullOrWhiteSpace(pipeline.Name))
            diagnostics.Add(LocateIn(locations, "name", pipeline.FilePath)
                .Error(DiagnosticCodes.MissingRequiredSetting, "the pipeline needs a 'name'"));
        foreach (var stage in StagesSettings.Names)
        {
            if (pipeline.Stages.Section(stage) is not IValidatableSettings settings) continue;
            foreach (var problem in settings.Validate())
            {
                var keyPath = $"stages.{stage}.{problem.Key}";
                diagnostics.Add(LocateIn(locations, keyPath, pipeline.FilePath)
                    .Error(problem.Code ?? DiagnosticCodes.InvalidStageSettings, $"{stage}: {problem.Message}"));
            }
        }
        if (!pipeline.Stages.Train.IsBuiltin && pipeline.Stages.Tokenize.Vocabulary == "used")
            diagnostics.Add(LocateIn(locations, "stages.tokenize.vocabulary", pipeline.FilePath)
                .Error(DiagnosticCodes.InvalidStageSettings,
                $"tokenize: vocabulary 'used' renumbers the tokens, which only a model trained from scratch can " +
                $"follow; model '{pipeline.Stages.Train.Model}' is pretrained, so use vocabulary: full"));
        if (pipeline.Stages.Train.EvalSteps > 0 && pipeline.Stages.Format.Validation == 0)
            diagnostics.Add(LocateIn(locations, "stages.train.eval_steps", pipeline.FilePath)
                .Error(DiagnosticCodes.InvalidStageSettings,
                "train: eval_steps measures the validation loss, but format.validation is 0 (no validation split); " +
                "hold some records out or set eval_steps: 0"));
        if (pipeline.Stages.Evaluate.Prompts.Any(string.IsNullOrWhiteSpace))
            diagnostics.Add(LocateIn(locations, "stages.evaluate.prompts", pipeline.FilePath)
                .Error(DiagnosticCodes.InvalidStageSettings, "evaluate: prompts must not be empty"));
        foreach (var (code, message) in ExportChecks.Problems(pipeline))
            diagnostics.Add(LocateIn(locations, "stages.export.formats", pipeline.FilePath).Error(code, message));
    }

    private static SourceLocation LocateIn(Dictionary<string, SourceLocation> locations, string keyPath, string file)
    {
        for (var key = keyPath; key.Length > 0; key = key.Contains('.') ? key[..key.LastIndexOf('.')] : "")
            if (locations.TryGetValue(key, out var location)) return location;
        return new SourceLocation(file, 0, 0);
    }

    private static string DisplayKey(string keyPath) => keyPath.StartsWith("stages.", StringComparison.Ordinal)
        ? keyPath["stages.".Length..] : keyPath;

    private static string SectionName(string prefix) => DisplayKey(prefix.TrimEnd('.')) is var name && name == "stages"
        ? "stages" : DisplayKey(prefix.TrimEnd('.'));
}
