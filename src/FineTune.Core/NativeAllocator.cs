namespace FineTune.Core;

/// <summary>
/// How malloc serves libtorch's native allocations. A training step frees and allocates buffers of tens to hundreds
/// of megabytes; glibc serves those by mmap and returns them on free, and jemalloc's default returns freed pages
/// within seconds, so every step faults its activations in again, page by page. In a virtual machine each fault is
/// expensive: measured here (README "Speed on CPU"), converting [1280, 32768] logits to float32 took 290 ms on glibc's
/// defaults and 5 ms on a heap that keeps its pages. The tool therefore runs the commands that compute with libtorch
/// on a tuned allocator:
/// jemalloc where it is installed (Debian/Ubuntu: libjemalloc2), with freed pages kept (no decay) and transparent
/// huge pages; otherwise glibc malloc with transparent huge pages and allocations up to 32 MB served from a heap that
/// is not trimmed. Both need a setting made before the process starts (LD_PRELOAD, MALLOC_CONF, GLIBC_TUNABLES), so
/// the CLI starts itself again with them. <see cref="Variable"/> chooses: <c>auto</c> (default), <c>jemalloc</c>,
/// <c>glibc</c>, or <c>system</c> (nothing changed).
/// </summary>
internal static class NativeAllocator
{
    /// <summary>The environment variable: auto (default), jemalloc, glibc or system.</summary>
    public const string Variable = "FINETUNE_ALLOCATOR";

    /// <summary>jemalloc: freed pages stay in the process (no decay back to the kernel), on transparent huge pages.</summary>
    public const string JemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1,thp:always";

    /// <summary>
    /// glibc (2.35+ reads these; older versions ignore them): transparent huge pages for its mappings, mmap only above
    /// 32 MB (the most glibc allows), and a heap that is neither trimmed nor grown in small steps.
    /// </summary>
    public const string GlibcTunables = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432"
        + ":glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456";

    /// <summary>Where distributions install jemalloc's shared library, the multiarch folders first.</summary>
    public static readonly IReadOnlyList<string> JemallocPaths =
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2",
    ];

    /// <summary>
    /// The environment a process should start with to run on the allocator <paramref name="setting"/> asks for, or
    /// null when the present one already has it (so the second start does not start again), when the setting is
    /// <c>system</c>, off Linux, or when <c>LD_PRELOAD</c> already names an allocator (the user chose one).
    /// A user's own MALLOC_CONF or GLIBC_TUNABLES comes after ours, so its values win.
    /// </summary>
    public static IReadOnlyDictionary<string, string>? EnvironmentFor(string? setting,
        Func<string, string?> environment, bool isLinux, Func<string, bool> fileExists)
    {
        var choice = setting?.Trim().ToLowerInvariant() switch
        {
            null or "" or "auto" => "auto",
            var other => other,
        };
        if (!isLinux || choice is not ("auto" or "jemalloc" or "glibc")) return null;
        var preload = environment("LD_PRELOAD");
        var preloaded = preload is null ? null : AllocatorIn(preload);
        if (preloaded is not null && preloaded != "jemalloc") return null;
        var jemalloc = preloaded == "jemalloc" ? null
            : choice == "glibc" ? null : JemallocPaths.FirstOrDefault(fileExists);
        var wanted = new Dictionary<string, string>(StringComparer.Ordinal);
        if (preloaded == "jemalloc" || jemalloc is not null)
        {
            if (jemalloc is not null) wanted["LD_PRELOAD"] = WithPreload(jemalloc, preload);
            wanted["MALLOC_CONF"] = Prepend(JemallocConf, environment("MALLOC_CONF"), ',');
        }
        else wanted["GLIBC_TUNABLES"] = Prepend(GlibcTunables, environment("GLIBC_TUNABLES"), ':');
        return wanted.All(kv => environment(kv.Key) == kv.Value) ? null : wanted;
    }

    /// <summary>LD_PRELOAD with <paramref name="library"/> in front of what it held.</summary>
    public static string WithPreload(string library, string? ldPreload) =>
        string.IsNullOrWhiteSpace(ldPreload) ? library : $"{library}:{ldPreload}";

    // Ours first, the user's after; a value that already starts with ours is left as it is.
    private static string Prepend(string ours, string? theirs, char separator) =>
        string.IsNullOrEmpty(theirs) ? ours
        : theirs.StartsWith(ours, StringComparison.Ordinal) ? theirs
        : ours + separator + theirs;

    /// <summary>
    /// The allocator a process with these memory maps (/proc/self/maps) and this environment runs on, and whether it
    /// runs with the tuning above.
    /// </summary>
    public static string InUse(string maps, Func<string, string?> environment)
    {
        var allocator = AllocatorIn(maps) ?? "glibc malloc";
        var tuned = allocator switch
        {
            "jemalloc" => environment("MALLOC_CONF")?.Contains(JemallocConf, StringComparison.Ordinal) == true,
            "glibc malloc" => environment("GLIBC_TUNABLES")?.Contains(GlibcTunables, StringComparison.Ordinal) == true,
            _ => false,
        };
        return tuned ? allocator + " (pages kept, huge pages)" : allocator;
    }

    /// <summary>This process's allocator; "unknown" where /proc/self/maps cannot be read (not Linux).</summary>
    public static string ThisProcess()
    {
        try
        {
            return InUse(File.ReadAllText("/proc/self/maps"), Environment.GetEnvironmentVariable);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    private static string? AllocatorIn(string text) =>
        text.Contains("libjemalloc", StringComparison.Ordinal) ? "jemalloc"
        : text.Contains("libmimalloc", StringComparison.Ordinal) ? "mimalloc"
        : text.Contains("libtcmalloc", StringComparison.Ordinal) ? "tcmalloc"
        : null;
}
