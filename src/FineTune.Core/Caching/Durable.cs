using System.Runtime.InteropServices;

namespace FineTune.Core.Caching;

/// <summary>
/// Flushes files and folders to the disk before a rename publishes them: without it a power cut after the rename can
/// leave empty or short files behind a committed name (the rename reaches the disk before the data).
/// </summary>
internal static class Durable
{
    public static void FlushFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>A folder's own entries (names created, renamed or removed in it). Windows has no such call; there
    /// NTFS journals the metadata.</summary>
    public static void FlushDirectory(string path)
    {
        if (OperatingSystem.IsWindows()) return;
        var descriptor = Open(path, 0); // O_RDONLY, which POSIX allows for folders
        if (descriptor < 0) return;
        try { _ = Fsync(descriptor); }
        finally { _ = Close(descriptor); }
    }

    /// <summary>Every file and folder under <paramref name="root"/>, and the root itself.</summary>
    public static void FlushTree(string root)
    {
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)) FlushFile(file);
        foreach (var directory in Directory.EnumerateDirectories(root, "*", SearchOption.AllDirectories))
            FlushDirectory(directory);
        FlushDirectory(root);
    }

    [DllImport("libc", EntryPoint = "open")]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "fsync")]
    private static extern int Fsync(int descriptor);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int descriptor);
}
