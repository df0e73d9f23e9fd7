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
///   runs/&lt;time&gt;-&lt;pid&gt;.json          what each run did and how long it took (timings)
///   damaged/&lt;stage&gt;-&lt;key&gt;-&lt;id&gt;/      entries found damaged on reuse or by verify, moved aside
///   run.lock                          held by the run that writes this store
///   .finetune-store                   the marker: written when the store is created
/// </code>
/// A crash or Ctrl+C can leave only tmp/ and work/ behind, never something that looks committed. The tool deletes
/// only inside a folder that holds the marker, so a <c>store:</c> naming some other folder cannot lose its files.
/// </summary>
internal sealed class StageStore
{
    /// <summary>Bump when the key recipe or the store layout changes, so old entries are never mistaken for
    /// new.</summary>
    public const int CacheScheme = 1;

    public string Root { get; }

    public const string MarkerFile = ".finetune-store";

    /// <summary>What a store folder from before the marker held at its top level.</summary>
    private static readonly HashSet<string> UnmarkedStoreNames = ["stages", "tmp", "work", "runs", "run.lock"];

    public StageStore(string root) => Root = Path.GetFullPath(root);

    /// <summary>
    /// Why the tool must not write (and so delete) in <see cref="Root"/>, or null when it may: the folder is missing or
    /// empty (it becomes a store), holds the marker, or is a store an older version made (only store names, run.lock
    /// among them), which gets the marker.
    /// </summary>
    public string? OwnershipProblem()
    {
        if (File.Exists(Path.Combine(Root, MarkerFile)) || !Directory.Exists(Root)) return null;
        var names = Directory.EnumerateFileSystemEntries(Root).Select(Path.GetFileName).ToList();
        if (names.Count == 0 || (names.Contains("run.lock") && names.All(n => UnmarkedStoreNames.Contains(n!))))
            return null;
        return $"the store folder {Root} already holds files and has no {MarkerFile} marker, so it is not a " +
            $"finetune store and nothing there will be deleted; point store: at a new or empty folder (or, if it " +
            $"really is a store, create the empty file {Path.Combine(Root, MarkerFile)})";
    }

    /// <summary>Creates the store (with its marker) or checks that the existing folder is one.</summary>
    public void EnsureOwned()
    {
        if (OwnershipProblem() is { } problem) throw new FineTuneException(DiagnosticCodes.NotAStore, problem);
        var marker = Path.Combine(Root, MarkerFile);
        if (File.Exists(marker)) return;
        Directory.CreateDirectory(Root);
        File.WriteAllText(marker, "A dotnet finetune stage store: the tool deletes files only in folders that hold " +
            "this file.\n");
    }

    /// <summary>Throws unless the marker is there: every deletion in the store goes through this first.</summary>
    private void RequireMarker()
    {
        if (!File.Exists(Path.Combine(Root, MarkerFile)))
            throw new FineTuneException(DiagnosticCodes.NotAStore, OwnershipProblem() ??
                $"the store folder {Root} has no {MarkerFile} marker; nothing there will be deleted");
    }

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

    /// <summary>
    /// What is wrong with the committed entry for this key, or null when nothing is (or there is no entry): a missing,
    /// extra or wrongly sized output file, or an unreadable <c>entry.json</c>; with <paramref name="rehash"/> also a
    /// file whose bytes no longer match its sha256. Sizes are cheap to check, so every reuse checks them.
    /// </summary>
    public string? FindDamage(string stage, string key, StoreEntry? entry, bool rehash)
    {
        var directory = EntryDirectory(stage, key);
        if (entry is null)
            return Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any()
                ? "its entry.json is missing or unreadable" : null;
        var entryFile = Path.Combine(directory, "entry.json");
        var checksum = entryFile + ".sha256";
        if (!File.Exists(checksum)) return WrittenByOlderVersion;
        if (File.ReadAllText(checksum) != ContentHash.OfFile(entryFile))
            return "its entry.json no longer matches its entry.json.sha256";
        if (entry.Stage != stage || entry.Key != key || entry.OutputHash != OutputHashOf(entry.Outputs))
            return "its entry.json does not match its place or its own outputs";
        var output = OutputDirectory(stage, key);
        foreach (var (name, record) in entry.Outputs)
        {
            var file = new FileInfo(Path.Combine(output, name));
            if (!file.Exists) return $"{name} is missing";
            if (file.Length != record.Size)
                return $"{name} holds {file.Length:N0} bytes where {record.Size:N0} were written";
        }
        if (!Directory.Exists(output)) return "its output folder is missing";
        var extra = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(output, f).Replace('\\', '/'))
            .FirstOrDefault(name => !entry.Outputs.ContainsKey(name));
        if (extra is not null) return $"{extra} was not among its outputs";
        if (rehash)
            foreach (var (name, record) in entry.Outputs)
                if (ContentHash.OfFile(Path.Combine(output, name)) != record.Sha256)
                    return $"{name} no longer matches its sha256";
        return null;
    }

    /// <summary>
    /// What <see cref="FindDamage"/> says of an entry without entry.json.sha256: versions before it wrote none, so
    /// such an entry is not damage to report but one to compute again.
    /// </summary>
    public const string WrittenByOlderVersion = "it was written by an older version of the tool (it has no " +
        "entry.json.sha256)";

    /// <summary>Moves a damaged entry to <c>damaged/</c> (for a look, removed by cache gc) and returns where.</summary>
    public string MoveAside(string stage, string key)
    {
        RequireMarker();
        var aside = Path.Combine(Root, "damaged", $"{stage}-{key[..16]}-{Guid.NewGuid():N}"[..48]);
        Directory.CreateDirectory(Path.Combine(Root, "damaged"));
        Directory.Move(EntryDirectory(stage, key), aside);
        return aside;
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
        var entryFile = Path.Combine(temporaryEntry, "entry.json");
        File.WriteAllText(entryFile, JsonSerializer.Serialize(entry, StoreEntry.Json));
        // entry.json's summary goes into lock files, so a changed byte there must be found as cheaply as a size.
        File.WriteAllText(entryFile + ".sha256", ContentHash.OfFile(entryFile));
        // On the disk before the rename makes it look committed.
        Durable.FlushTree(temporaryEntry);
        var destination = EntryDirectory(entry.Stage, entry.Key);
        RequireMarker();
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        // a stale entry without entry.json
        if (Directory.Exists(destination)) Directory.Delete(destination, recursive: true);
        Directory.Move(temporaryEntry, destination);
        Durable.FlushDirectory(Path.GetDirectoryName(destination)!);
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

    /// <summary>The identity of a stage's output: a hash over its files' names, hashes and sizes (in ordinal order
    /// whatever comparer the map was read back with, so a re-read entry gives the same hash).</summary>
    public static string OutputHashOf(SortedDictionary<string, FileRecord> outputs) =>
        ContentHash.OfText(string.Join("\n", outputs.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => $"{kv.Value.Sha256} {kv.Value.Size} {kv.Key}")));

    /// <summary>Removes temporary entries left by runs that crashed (only call while holding the run lock).</summary>
    public void RemoveTemporaryLeftovers()
    {
        var tmp = Path.Combine(Root, "tmp");
        if (!Directory.Exists(tmp)) return;
        RequireMarker();
        foreach (var directory in Directory.EnumerateDirectories(tmp))
            TryDelete(directory);
    }

    public static void TryDelete(string directory)
    {
        try { if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Removes a folder of this store (an entry or scratch), after checking the marker.</summary>
    public void Delete(string directory)
    {
        RequireMarker();
        TryDelete(directory);
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
        EnsureOwned();
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
