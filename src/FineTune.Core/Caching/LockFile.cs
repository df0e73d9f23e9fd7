using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using FineTune.Core.Pipeline;
using YamlDotNet.Serialization;

namespace FineTune.Core.Caching;

/// <summary>
/// <c>&lt;pipeline&gt;.lock.yaml</c> beside the pipeline: what each stage last consumed and produced. Meant to be
/// committed, so it is written with a fixed key order (stages in pipeline order, everything else sorted) and
/// one value per line, and it is rewritten atomically after each stage.
/// </summary>
internal sealed class LockFile
{
    public const int Schema = 1;

    public string Path { get; }
    public string PipelineName { get; set; } = "";
    public string ToolVersion { get; set; } = "";

    /// <summary>Stage name to entry; entries are StoreEntry-shaped trees of plain values.</summary>
    public Dictionary<string, LockedStage> Stages { get; } = new(StringComparer.Ordinal);

    public sealed record LockedStage(string Key, string OutputHash, IReadOnlyDictionary<string, string> FlatSettings,
        IReadOnlyDictionary<string, string> InputHashes,
        IReadOnlyDictionary<string, string> Environment, int Implementation, StoreEntry? Entry,
            IReadOnlyList<StageInput>? Inputs = null);

    public LockFile(string path) => Path = path;

    public static string PathFor(string pipelineFile)
    {
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(pipelineFile))!;
        return System.IO.Path.Combine(directory, System.IO.Path.GetFileNameWithoutExtension(pipelineFile) +
            ".lock.yaml");
    }

    public static LockFile Read(string path) => Read(path, strict: false);

    /// <summary>
    /// Reads a lock file that must be readable (<c>cache gc</c> decides from it what to delete): one that does not
    /// parse, or lacks its <c>stages</c> map, is an error naming the file.
    /// </summary>
    public static LockFile ReadStrict(string path) => Read(path, strict: true);

    private static LockFile Read(string path, bool strict)
    {
        var lockFile = new LockFile(path);
        if (!File.Exists(path)) return lockFile;
        object? root;
        var text = File.ReadAllText(path);
        try
        {
            RefuseAliasesAndDepth(path, text);
            root = new DeserializerBuilder().Build().Deserialize<object>(text);
        }
        catch (YamlDotNet.Core.YamlException e)
        {
            // For a run a damaged lock file only means "no history"; for gc it would mean "delete everything".
            if (strict) throw Unreadable(path, $"line {e.Start.Line}: {e.Message}");
            return lockFile;
        }
        if (root is not IDictionary top || top["stages"] is not IDictionary stages)
        {
            if (strict && !(root is IDictionary t && t.Contains("stages") && t["stages"] is null))
                throw Unreadable(path, "it has no 'stages' map");
            return lockFile;
        }
        foreach (DictionaryEntry stage in stages)
        {
            if (stage.Value is not IDictionary entry || entry["key"] is not string key)
            {
                if (strict) throw Unreadable(path, $"stage '{stage.Key}' has no key");
                continue;
            }
            var settings = entry["settings"] is IDictionary s ? Flatten(s, "") : [];
            var inputs = entry["inputs"] is IDictionary i
                ? i.Keys.Cast<object>().ToDictionary(k => k.ToString()!,
                    k => i[k] is IDictionary r ? (r["sha256"] ?? r["etag"])?.ToString() ?? "" : "")
                : [];
            var environment = entry["environment"] is IDictionary env
                ? env.Keys.Cast<object>().ToDictionary(k => k.ToString()!, k => env[k]?.ToString() ?? "")
                : [];
            var implementation = int.TryParse(entry["implementation"]?.ToString(), out var v) ? v : 0;
            lockFile.Stages[stage.Key.ToString()!] = new LockedStage(key, entry["output_hash"]?.ToString() ?? "",
                settings, inputs, environment, implementation, null);
        }
        return lockFile;
    }

    /// <summary>The deepest nesting the tool writes (stages, stage, settings, nested settings) with room to
    /// spare.</summary>
    public const int MaxDepth = Pipeline.YamlStructureGuard.MaxDepth;

    /// <summary>
    /// The tool never writes anchors, aliases or deep nesting, and resolving them unchecked lets a few lines expand
    /// without limit ("billion laughs"), so they are refused at their place before anything is built.
    /// </summary>
    private static void RefuseAliasesAndDepth(string path, string text)
    {
        if (Pipeline.YamlStructureGuard.FindRefused(text) is var (problem, line, column))
            throw new Diagnostics.FineTuneException(Diagnostics.Diagnostic.Error(
                Diagnostics.DiagnosticCodes.LockFileStructureRefused,
                $"the lock file holds {problem}, which the tool never writes; check it out again or delete it " +
                $"(the next run writes it anew)", path, line, column));
    }

    private static Diagnostics.FineTuneException Unreadable(string path, string why) =>
        new(Diagnostics.DiagnosticCodes.UnreadableLockFile, $"cannot read the lock file {path} ({why}); nothing was " +
            $"removed: fix it (for example resolve its git conflict, or check it out again) and run cache gc again");

    private static Dictionary<string, string> Flatten(IDictionary map, string prefix)
    {
        var flat = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in map)
        {
            var key = prefix + e.Key;
            if (e.Value is IDictionary nested) foreach (var kv in Flatten(nested, key + ".")) flat[kv.Key] = kv.Value;
            else flat[key] = e.Value is IList list ? "[" + string.Join(", ",
                list.Cast<object?>().Select(x => x?.ToString() ?? "null")) + "]" : e.Value?.ToString() ?? "null";
        }
        return flat;
    }

    /// <summary>Records a settled stage: the entry's key, settings and outputs, and what this run found it
    /// read.</summary>
    public void Record(StoreEntry entry, IReadOnlyList<StageInput> inputs)
    {
        var flat = SettingsReflection.Flatten(entry.Settings)
            .ToDictionary(kv => kv.Key, kv => SettingsReflection.Display(kv.Value));
        Stages[entry.Stage] = new LockedStage(entry.Key, entry.OutputHash, flat,
            entry.Inputs.ToDictionary(kv => kv.Key, kv => kv.Value.Sha256),
            entry.Environment, entry.Implementation, entry, inputs);
    }

    /// <summary>Writes the file atomically. Stages recorded only from an older file (no entry) keep their
    /// text.</summary>
    public void Write(IReadOnlyList<string> stageOrder, IReadOnlyDictionary<string, string> previousStageBlocks)
    {
        var text = new StringBuilder();
        text.Append("# Written by dotnet finetune: what each stage of this pipeline last read and wrote.\n");
        text.Append("# Commit it with the pipeline; do not edit it by hand.\n");
        text.Append($"schema: {Schema}\n");
        text.Append($"pipeline: {Quote(PipelineName)}\n");
        text.Append($"tool: {Quote(ToolVersion)}\n");
        text.Append("stages:\n");
        foreach (var stage in stageOrder)
        {
            if (Stages.TryGetValue(stage, out var locked) && locked.Entry is { } entry)
                AppendStage(text, entry, locked.Inputs ?? []);
            else if (previousStageBlocks.TryGetValue(stage, out var block)) text.Append(block);
        }
        var temporary = Path + $".{Environment.ProcessId}.tmp";
        try
        {
            File.WriteAllText(temporary, text.ToString(), new UTF8Encoding(false));
            Durable.FlushFile(temporary);
            File.Move(temporary, Path, overwrite: true);
        }
        catch (IOException)
        {
            // A full disk, say: the previous lock file stays as it was, and no half-written copy beside it.
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>The text blocks of each stage in an existing lock file, to carry over stages this run did not
    /// touch.</summary>
    public static Dictionary<string, string> ReadStageBlocks(string path)
    {
        var blocks = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!File.Exists(path)) return blocks;
        string? current = null;
        var builder = new StringBuilder();
        var inStages = false;
        foreach (var line in File.ReadAllLines(path))
        {
            if (line == "stages:") { inStages = true; continue; }
            if (!inStages) continue;
            if (line.StartsWith("  ", StringComparison.Ordinal) && !line.StartsWith("   ", StringComparison.Ordinal)
                && line.EndsWith(':'))
            {
                if (current is not null) blocks[current] = builder.ToString();
                current = line.Trim().TrimEnd(':');
                builder.Clear();
            }
            if (current is not null) builder.Append(line).Append('\n');
        }
        if (current is not null) blocks[current] = builder.ToString();
        return blocks;
    }

    private void AppendStage(StringBuilder text, StoreEntry entry, IReadOnlyList<StageInput> inputs)
    {
        var readFrom = inputs.ToDictionary(i => i.Name, StringComparer.Ordinal);
        text.Append($"  {entry.Stage}:\n");
        text.Append($"    key: {entry.Key}\n");
        text.Append($"    implementation: {entry.Implementation}\n");
        AppendMap(text, "settings", entry.Settings, 4);
        text.Append("    inputs:\n");
        foreach (var (name, record) in entry.Inputs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var input = readFrom.GetValueOrDefault(name);
            // A Hub file not read from disk is known by the ETag the Hub reports (a git blob id for files outside
            // LFS), not by a sha256.
            var hashName = input is { Kind: StageInputKind.HubFile, Path: null } ? "etag" : "sha256";
            text.Append($"      {QuoteKey(name)}: {{{hashName}: {record.Sha256}, size: " +
                $"{record.Size}{Origin(input)}}}\n");
        }
        text.Append("    outputs:\n");
        foreach (var (name, record) in entry.Outputs.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            text.Append($"      {QuoteKey(name)}: {{sha256: {record.Sha256}, size: {record.Size}}}\n");
        text.Append($"    output_hash: {entry.OutputHash}\n");
        text.Append("    environment:\n");
        // Only what identifies the results: the thread count (like durations) lives in the run record, so the
        // same job on another machine leaves this file unchanged.
        foreach (var (name, value) in entry.Environment
            .Where(kv => kv.Key != FineTune.Core.Stages.ComputeEnvironment.ThreadsKey)
            .OrderBy(kv => kv.Key, StringComparer.Ordinal))
            text.Append($"      {name}: {Quote(value)}\n");
        if (entry.Settings.TryGetValue("seed", out var seed)) text.Append($"    seed: {Scalar(seed)}\n");
        if (entry.Summary.Count > 0) AppendMap(text, "summary", entry.Summary, 4);
    }

    /// <summary>
    /// Where an input came from, for people reading the file: a user's file relative to the lock file (absolute paths
    /// differ between clones), a Hub file by its commit. Neither enters the key.
    /// </summary>
    private string Origin(StageInput? input) => input switch
    {
        { Kind: StageInputKind.LocalFile, Path: { } path } =>
            ", path: " + Quote(System.IO.Path.GetRelativePath(
                System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!, path).Replace('\\', '/')),
        { Kind: StageInputKind.HubFile, Commit: { } commit } => ", commit: " + Quote(commit),
        _ => "",
    };

    private static void AppendMap(StringBuilder text, string name, IDictionary<string, object?> map, int indent)
    {
        var pad = new string(' ', indent);
        if (map.Count == 0) { text.Append($"{pad}{name}: {{}}\n"); return; }
        text.Append($"{pad}{name}:\n");
        // Ordinal order, whatever comparer the map was deserialized with, so the file never reorders by culture.
        foreach (var (key, value) in map.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (value is IDictionary<string, object?> nested) AppendMap(text, QuoteKey(key), nested, indent + 2);
            else text.Append($"{pad}  {QuoteKey(key)}: {Scalar(value)}\n");
        }
    }

    private static readonly JsonSerializerOptions QuoteOptions =
        new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Strings are always double-quoted (JSON escapes are valid YAML), so no value changes type on
    /// reading.</summary>
    private static string Quote(string value) => JsonSerializer.Serialize(value, QuoteOptions);

    private static string QuoteKey(string key) => key.All(c => char.IsAsciiLetterOrDigit(c)
        || c is '_' or '-' or '.' or '/') ? key : Quote(key);

    private static string Scalar(object? value) => value switch
    {
        null => "null",
        string s => Quote(s),
        bool b => b ? "true" : "false",
        double d => double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture)
            : Quote(d.ToString(CultureInfo.InvariantCulture)),
        long or int => Convert.ToString(value, CultureInfo.InvariantCulture)!,
        IEnumerable list => "[" + string.Join(", ", list.Cast<object?>().Select(Scalar)) + "]",
        _ => Quote(Convert.ToString(value, CultureInfo.InvariantCulture) ?? ""),
    };
}
