using System.Diagnostics;
using System.Text.Json;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Caching;

/// <summary>
/// The content-addressed store of stage outputs (default <c>.finetune/</c> beside the pipeline):
/// <code>
///   stages/&lt;stage&gt;/&lt;key&gt;/output/...   committed outputs (read-only by convention)
///   stages/&lt;stage&gt;/&lt;key&gt;/entry.json   what went in and came out
///   tmp/&lt;random&gt;/                   entries being written; committed by one atomic directory rename
///   work/&lt;stage&gt;-&lt;key&gt;/             scratch that survives a crash (checkpoints), removed after commit
///   run.lock                          held by the run that writes this store
/// </code>
/// A crash or Ctrl+C can leave only tmp/ and work/ behind, never something that looks committed.
/// </summary>
internal sealed class StageStore
{
    /// <summary>Bump when the key recipe or the store layout changes, so old entries are never mistaken for
    /// new.</summary>
    public const int CacheScheme = 1;

    public string Root { get; }

    public StageStore(string root) => Root = Path.GetFullPath(root);

    public string EntryDirectory(string stage, string key) => Path.Combine(Root, "stages", stage, key);
    public string OutputDirectory(string stage, string key) => Path.Combine(EntryDirectory(stage, key), "output");
    public string WorkDirectory(string stage, string key) => Path.Combine(Root, "work", $"{stage}-{key[..16]}");

    public StoreEntry? TryGet(string stage, string key)
    {
        var path = Path.Combine(EntryDirectory(stage, key), "entry.json");
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<StoreEntry>(File.ReadAllText(path), StoreEntry.Json); }
        catch (JsonException) { return null; }
    }

    /// <summary>A fresh temporary entry folder with an empty <c>output/</c> inside.</summary>
    public string NewTemporaryEntry()
    {
        var path = Path.Combine(Root, "tmp", $"{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(path, "output"));
        return path;
    }

    /// <summary>Hashes the temporary output, writes entry.json, and renames the folder into place.</summary>
    public StoreEntry Commit(string temporaryEntry, Func<SortedDictionary<string, FileRecord>, string,
        StoreEntry> describe)
    {
        var outputs = HashTree(Path.Combine(temporaryEntry, "output"));
        var entry = describe(outputs, OutputHashOf(outputs));
        File.WriteAllText(Path.Combine(temporaryEntry, "entry.json"), JsonSerializer.Serialize(entry, StoreEntry.Json));
        var destination = EntryDirectory(entry.Stage, entry.Key);
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        // a stale entry without entry.json
        if (Directory.Exists(destination)) Directory.Delete(destination, recursive: true);
        Directory.Move(temporaryEntry, destination);
        var work = WorkDirectory(entry.Stage, entry.Key);
        if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        return entry;
    }

    public static SortedDictionary<string, FileRecord> HashTree(string directory)
    {
        var records = new SortedDictionary<string, FileRecord>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(directory, file).Replace('\\', '/');
            records[relative] = new FileRecord(ContentHash.OfFile(file), new FileInfo(file).Length);
        }
        return records;
    }

    /// <summary>The identity of a stage's output: a hash over its files' names, hashes and sizes.</summary>
    public static string OutputHashOf(SortedDictionary<string, FileRecord> outputs) =>
        ContentHash.OfText(string.Join("\n", outputs.Select(kv => $"{kv.Value.Sha256} {kv.Value.Size} {kv.Key}")));

    /// <summary>Removes temporary entries left by runs that crashed (only call while holding the run lock).</summary>
    public void RemoveTemporaryLeftovers()
    {
        var tmp = Path.Combine(Root, "tmp");
        if (!Directory.Exists(tmp)) return;
        foreach (var directory in Directory.EnumerateDirectories(tmp))
            TryDelete(directory);
    }

    public static void TryDelete(string directory)
    {
        try { if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public IEnumerable<(string Stage, string Key, string Directory)> Entries()
    {
        var stages = Path.Combine(Root, "stages");
        if (!Directory.Exists(stages)) yield break;
        foreach (var stageDirectory in Directory.EnumerateDirectories(stages))
        foreach (var entryDirectory in Directory.EnumerateDirectories(stageDirectory))
            yield return (Path.GetFileName(stageDirectory), Path.GetFileName(entryDirectory), entryDirectory);
    }

    /// <summary>
    /// Takes the store's run lock. Another run holding it makes this wait (saying so once through
    /// <paramref name="onWait"/>) or, with <paramref name="wait"/> false, fail at once.
    /// </summary>
    public IDisposable AcquireRunLock(bool wait, Action<string> onWait, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Root);
        var path = Path.Combine(Root, "run.lock");
        var told = false;
        while (true)
        {
            try
            {
                var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                stream.SetLength(0);
                using (var writer = new StreamWriter(stream, leaveOpen: true))
                    writer.Write($"{Environment.ProcessId} {Process.GetCurrentProcess().StartTime:O}");
                stream.Flush();
                return stream;
            }
            catch (IOException)
            {
                var holder = TryReadHolder(path);
                if (!wait)
                    throw new Diagnostics.FineTuneException(DiagnosticCodes.StoreInUse,
                        $"another run{holder} is using the store {Root}; wait for it to finish (or run without " +
                        $"--no-wait to queue behind it)");
                if (!told) { onWait($"another run{holder} is using {Root}; waiting for it to finish (Ctrl+C " +
                    $"to give up)"); told = true; }
                Task.Delay(500, cancellationToken).GetAwaiter().GetResult();
            }
        }
    }

    private static string TryReadHolder(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var text = new StreamReader(stream).ReadToEnd().Split(' ');
            return text.Length > 0 && int.TryParse(text[0], out var pid) ? $" (process {pid})" : "";
        }
        catch (IOException) { return ""; }
    }
}
