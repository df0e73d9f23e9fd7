namespace FineTune.Core;

/// <summary>
/// Which malloc serves libtorch's native allocations. Training frees and allocates thousands of activation buffers
/// per step; jemalloc reuses them where glibc malloc returns large blocks to the system and faults them in again
/// (README "Speed on CPU" has the measurement). The tool therefore runs itself with jemalloc preloaded where the
/// library is installed (Debian/Ubuntu: libjemalloc2), unless <see cref="Variable"/> is <c>system</c>; without it,
/// glibc malloc serves, and training is only slower.
/// </summary>
internal static class NativeAllocator
{
    /// <summary>The environment variable: <c>system</c> keeps glibc malloc; unset or anything else: jemalloc.</summary>
    public const string Variable = "FINETUNE_ALLOCATOR";

    /// <summary>Where distributions install jemalloc's shared library, the multiarch folders first.</summary>
    public static readonly IReadOnlyList<string> JemallocPaths =
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
        "/usr/lib64/libjemalloc.so.2", "/usr/lib/libjemalloc.so.2", "/usr/local/lib/libjemalloc.so.2",
    ];

    /// <summary>
    /// The library to preload by running this process again, or null to run as is: on Linux only, not when
    /// <paramref name="setting"/> (the variable's value) is <c>system</c>, not when <paramref name="ldPreload"/>
    /// already names an allocator (this is the second start, or the user chose one), and only if jemalloc is
    /// installed.
    /// </summary>
    public static string? PreloadFor(string? setting, string? ldPreload, bool isLinux, Func<string, bool> fileExists)
    {
        if (!isLinux || string.Equals(setting?.Trim(), "system", StringComparison.OrdinalIgnoreCase)) return null;
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
