namespace FineTune.Core;

/// <summary>
/// Which malloc serves libtorch's native allocations. Training frees and allocates thousands of activation buffers
/// per step, and the allocator decides how often they are faulted in again. With <see cref="Variable"/> set to
/// <c>jemalloc</c> the tool runs itself with jemalloc preloaded where the library is installed (Debian/Ubuntu:
/// libjemalloc2); otherwise, or without the library, glibc malloc serves. Opt-in until measured faster here: on the
/// project's shared 2-core machine jemalloc was 0.71-0.75x of glibc on the CPU job's shape (README "Speed on CPU").
/// </summary>
internal static class NativeAllocator
{
    /// <summary>The environment variable: <c>jemalloc</c> preloads jemalloc; unset or else: glibc malloc.</summary>
    public const string Variable = "FINETUNE_ALLOCATOR";

    /// <summary>Where distributions install jemalloc's shared library, the multiarch folders first.</summary>
    public static readonly IReadOnlyList<string> JemallocPaths =
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2",
    ];

    /// <summary>
    /// The library to preload by running this process again, or null to run as is: on Linux only, when
    /// <paramref name="setting"/> (the variable's value) is <c>jemalloc</c>, not when <paramref name="ldPreload"/>
    /// already names an allocator (this is the second start, or the user chose one), and only if jemalloc is
    /// installed.
    /// </summary>
    public static string? PreloadFor(string? setting, string? ldPreload, bool isLinux, Func<string, bool> fileExists)
    {
        if (!isLinux || !string.Equals(setting?.Trim(), "jemalloc", StringComparison.OrdinalIgnoreCase)) return null;
        if (ldPreload is not null && AllocatorIn(ldPreload) is not null) return null;
        return JemallocPaths.FirstOrDefault(fileExists);
    }

    /// <summary>LD_PRELOAD with <paramref name="library"/> in front of what it held.</summary>
    public static string WithPreload(string library, string? ldPreload) =>
        string.IsNullOrWhiteSpace(ldPreload) ? library : $"{library}:{ldPreload}";

    /// <summary>The allocator a process with these memory maps (/proc/self/maps) runs on.</summary>
    public static string InUse(string maps) => AllocatorIn(maps) ?? "glibc malloc";

    /// <summary>This process's allocator; "unknown" where /proc/self/maps cannot be read (not Linux).</summary>
    public static string ThisProcess()
    {
        try
        {
            return InUse(File.ReadAllText("/proc/self/maps"));
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
