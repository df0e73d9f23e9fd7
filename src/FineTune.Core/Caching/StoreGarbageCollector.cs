namespace FineTune.Core.Caching;

/// <summary>
/// Removes store entries that no lock file refers to. The lock files considered are the <c>*.lock.yaml</c> files
/// beside the pipelines that share the store (the store's parent folder by default).
/// </summary>
internal static class StoreGarbageCollector
{
    public sealed record Result(int Kept, IReadOnlyList<string> Removed, long BytesFreed);

    public static Result Collect(StageStore store, IEnumerable<string> lockFiles, bool dryRun)
    {
        var referenced = new HashSet<(string, string)>();
        foreach (var path in lockFiles)
            foreach (var (stage, locked) in LockFile.Read(path).Stages)
                referenced.Add((stage, locked.Key));

        var removed = new List<string>();
        long freed = 0;
        var kept = 0;
        foreach (var (stage, key, directory) in store.Entries().ToList())
        {
            if (referenced.Contains((stage, key))) { kept++; continue; }
            freed += SizeOf(directory);
            removed.Add(directory);
            if (!dryRun) StageStore.TryDelete(directory);
        }
        foreach (var scratch in new[] { Path.Combine(store.Root, "tmp"), Path.Combine(store.Root, "work") })
        {
            if (!Directory.Exists(scratch)) continue;
            foreach (var directory in Directory.EnumerateDirectories(scratch))
            {
                // Scratch of interrupted stages (checkpoints included): never referenced by a lock file.
                freed += SizeOf(directory);
                removed.Add(directory);
                if (!dryRun) StageStore.TryDelete(directory);
            }
        }
        return new Result(kept, removed, freed);
    }

    private static long SizeOf(string directory) =>
        Directory.Exists(directory) ? Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Sum(f => new FileInfo(f).Length) : 0;
}
