namespace FineTune.Core.Caching;

/// <summary>
/// Removes store entries that no lock file refers to. The lock files considered are the <c>*.lock.yaml</c> files
/// beside the pipelines that share the store (the store's parent folder by default). A lock file that cannot be read
/// stops it before anything is removed (it cannot tell which entries that pipeline uses), and the checkpoints of
/// interrupted stages in <c>work/</c> stay unless asked for.
/// </summary>
internal static class StoreGarbageCollector
{
    public sealed record Result(int Kept, IReadOnlyList<string> Removed, long BytesFreed);

    public static Result Collect(StageStore store, IEnumerable<string> lockFiles, bool dryRun,
        bool checkpoints = false)
    {
        var referenced = new HashSet<(string, string)>();
        foreach (var path in lockFiles)
            foreach (var (stage, locked) in LockFile.ReadStrict(path).Stages)
                referenced.Add((stage, locked.Key));

        var removed = new List<string>();
        long freed = 0;
        var kept = 0;
        foreach (var (stage, key, directory) in store.Entries().ToList())
        {
            if (referenced.Contains((stage, key))) { kept++; continue; }
            freed += SizeOf(directory);
            removed.Add(directory);
            if (!dryRun) store.Delete(directory);
        }
        // tmp/ holds only what crashed runs left (the caller holds the run lock), damaged/ what verification moved
        // aside; work/ holds resumable checkpoints.
        var scratches = checkpoints ? new[] { "tmp", "damaged", "work" } : ["tmp", "damaged"];
        foreach (var scratch in scratches.Select(s => Path.Combine(store.Root, s)))
        {
            if (!Directory.Exists(scratch)) continue;
            foreach (var directory in Directory.EnumerateDirectories(scratch))
            {
                freed += SizeOf(directory);
                removed.Add(directory);
                if (!dryRun) store.Delete(directory);
            }
        }
        return new Result(kept, removed, freed);
    }

    private static long SizeOf(string directory) =>
        Directory.Exists(directory) ? Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Sum(f => new FileInfo(f).Length) : 0;
}
