using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using YamlDotNet.Serialization;

namespace FineTune.Cli.Commands.Diff;

/// <summary>What one lock file says about one stage: its key, settings and figures (the summary), flattened to
/// dotted names.</summary>
internal sealed record LockedStageView(string Key, IReadOnlyDictionary<string, string> Settings,
    IReadOnlyDictionary<string, string> Figures, IReadOnlyList<(string Prompt, string Answer)>? Answers);

/// <summary>A lock file as read from disk or from git, with the stages in file order.</summary>
internal sealed record LockSnapshot(string Label, IReadOnlyList<string> Order,
    IReadOnlyDictionary<string, LockedStageView> Stages)
{
    /// <summary>A lock file path (a pipeline file stands for its lock file).</summary>
    public static string LockPathOf(string argument) =>
        argument.EndsWith(".lock.yaml", StringComparison.OrdinalIgnoreCase) ? argument
            : argument.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)
              || argument.EndsWith(".yml", StringComparison.OrdinalIgnoreCase) ? LockFile.PathFor(argument)
            : argument;

    public static LockSnapshot FromFile(string path)
    {
        if (!File.Exists(path))
            throw new FineTuneException(DiagnosticCodes.DiffLockFileNotFound,
                $"lock file '{path}' does not exist; run the pipeline first, or give a git revision with --rev");
        return Parse(File.ReadAllText(path), path, StoreOf(path));
    }

    /// <summary>The lock file as committed at <paramref name="revision"/> (<c>git show REV:./file</c>).</summary>
    public static LockSnapshot FromGit(string path, string revision)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var start = new ProcessStartInfo("git", ["-C", directory, "show", $"{revision}:./{Path.GetFileName(path)}"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = System.Text.Encoding.UTF8,
        };
        string text, error;
        int exitCode;
        try
        {
            using var git = Process.Start(start)!;
            var output = git.StandardOutput.ReadToEndAsync();
            error = git.StandardError.ReadToEnd();
            git.WaitForExit();
            text = output.Result;
            exitCode = git.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new FineTuneException(DiagnosticCodes.DiffLockFileNotFound,
                $"--rev needs git, which could not be started: {e.Message}");
        }
        if (exitCode != 0)
            throw new FineTuneException(DiagnosticCodes.DiffLockFileNotFound,
                $"git cannot show '{path}' at revision '{revision}': {error.Trim()}");
        return Parse(text, $"{path}@{revision}", StoreOf(path));
    }

    /// <summary>The stage store beside the pipeline, where the evaluate stage's answers may still be.</summary>
    private static StageStore? StoreOf(string lockPath)
    {
        var pipeline = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(lockPath))!,
            Path.GetFileName(lockPath).Replace(".lock.yaml", ".yaml", StringComparison.OrdinalIgnoreCase));
        if (!File.Exists(pipeline)) return null;
        try { return new StageStore(Core.Pipeline.PipelineLoader.LoadOrThrow(pipeline).StorePath); }
        catch (FineTuneException) { return null; }
    }

    private static LockSnapshot Parse(string text, string label, StageStore? store)
    {
        object? root;
        try { root = new DeserializerBuilder().Build().Deserialize<object>(text); }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new FineTuneException(DiagnosticCodes.DiffLockFileNotFound,
                $"{label} is not a lock file (YAML error: {e.Message})");
        }
        if (root is not IDictionary top || top["stages"] is not IDictionary stages)
            throw new FineTuneException(DiagnosticCodes.DiffLockFileNotFound,
                $"{label} is not a lock file (no 'stages')");
        var order = new List<string>();
        var views = new Dictionary<string, LockedStageView>(StringComparer.Ordinal);
        foreach (DictionaryEntry stage in stages)
        {
            if (stage.Value is not IDictionary entry) continue;
            var name = stage.Key.ToString()!;
            var key = entry["key"]?.ToString() ?? "";
            order.Add(name);
            views[name] = new LockedStageView(key, Flatten(entry["settings"] as IDictionary),
                Flatten(entry["summary"] as IDictionary), Answers(store, name, key));
        }
        return new LockSnapshot(label, order, views);
    }

    /// <summary>The answers in report.json of an evaluate stage's output, when the store still has it.</summary>
    private static List<(string, string)>? Answers(StageStore? store, string stage, string key)
    {
        if (store is null || key.Length == 0) return null;
        var report = Path.Combine(store.OutputDirectory(stage, key), "report.json");
        if (!File.Exists(report)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllText(report))?["answers"] is JsonArray answers
                ? answers.OfType<JsonObject>().Select(a => ((string?)a["prompt"] ?? "", (string?)a["answer"] ?? ""))
                    .ToList()
                : null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException) { return null; }
    }

    private static Dictionary<string, string> Flatten(IDictionary? map, string prefix = "")
    {
        var flat = new Dictionary<string, string>(StringComparer.Ordinal);
        if (map is null) return flat;
        foreach (DictionaryEntry e in map)
        {
            var key = prefix + e.Key;
            if (e.Value is IDictionary nested) foreach (var kv in Flatten(nested, key + ".")) flat[kv.Key] = kv.Value;
            else flat[key] = e.Value is IList list
                ? "[" + string.Join(", ", list.Cast<object?>().Select(x => x?.ToString() ?? "null")) + "]"
                : e.Value?.ToString() ?? "null";
        }
        return flat;
    }

    public static bool TryNumber(string text, out double value) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
}
