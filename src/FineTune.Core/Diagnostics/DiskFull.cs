namespace FineTune.Core.Diagnostics;

/// <summary>
/// Recognises "no space left" (ENOSPC) and "quota exceeded" (EDQUOT) wherever a write fails, and turns them into
/// one error people can act on (FT0916, exit code 3) instead of an internal error or a network fault.
/// </summary>
internal static class DiskFull
{
    // .NET on Unix gives an IOException the errno as its HResult when no managed exception maps the error.
    private const int NoSpace = 28;
    private const int QuotaExceeded = 122; // Linux; macOS reports EDQUOT as 69
    private const int QuotaExceededMac = 69;
    // On Windows the HResult is HRESULT_FROM_WIN32 of ERROR_DISK_FULL or ERROR_HANDLE_DISK_FULL.
    private const int WindowsDiskFull = unchecked((int)0x80070070);
    private const int WindowsHandleDiskFull = unchecked((int)0x80070027);

    /// <summary>The disk-full IOException in <paramref name="exception"/> or its inner exceptions, or null.</summary>
    public static IOException? Find(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
            if (e is IOException io && IsDiskFull(io.HResult)) return io;
        return null;
    }

    public static bool Is(Exception? exception) => Find(exception) is not null;

    private static bool IsDiskFull(int hresult) => OperatingSystem.IsWindows()
        ? hresult is WindowsDiskFull or WindowsHandleDiskFull
        : hresult is NoSpace or QuotaExceeded || (OperatingSystem.IsMacOS() && hresult == QuotaExceededMac);

    /// <summary>
    /// The error for a write that found the disk full at <paramref name="where"/>; <paramref name="neededBytes"/> is
    /// what the failed work was writing (a lower bound when it failed part way).
    /// </summary>
    public static FineTuneException Error(string where, long? neededBytes, Exception cause)
    {
        var figures = new List<string>();
        if (neededBytes is { } needed) figures.Add($"needed about {Megabytes(needed)} MB");
        if (FreeBytes(where) is { } free) figures.Add($"{Megabytes(free)} MB free");
        var message = $"disk full at {where}" + (figures.Count > 0 ? $" ({string.Join(", ", figures)})" : "") +
            ": free some space there, or point " +
            "store: (or FINETUNE_CACHE, HF_HOME) at a disk with room, and run again; nothing incomplete was " +
            $"committed ({Find(cause)?.Message ?? cause.Message})";
        return new FineTuneException(DiagnosticCodes.DiskFull, message, ExitCodes.StageFailed);
    }

    /// <summary>
    /// For a disk-full exception that reached the top without a better description: the file named in its message
    /// (".NET writes <c>No space left on device : 'PATH'</c>") and no size estimate beyond what is free.
    /// </summary>
    public static FineTuneException Error(Exception cause)
    {
        var message = Find(cause)?.Message ?? cause.Message;
        var quoted = message.LastIndexOf(" : '", StringComparison.Ordinal);
        var where = quoted >= 0 && message.EndsWith('\'') ? message[(quoted + 4)..^1] : "(unknown path)";
        return Error(where, null, cause);
    }

    /// <summary>Bytes in the files under <paramref name="directory"/>, or 0 when it cannot be read.</summary>
    public static long SizeOf(string directory)
    {
        try
        {
            return Directory.Exists(directory)
                ? Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
                    .Sum(f => new FileInfo(f).Length)
                : 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
    }

    private static long? FreeBytes(string path)
    {
        try
        {
            var existing = Path.GetFullPath(path);
            while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } parent) existing = parent;
            return new DriveInfo(existing).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    private static string Megabytes(long bytes) =>
        (bytes / 1_048_576.0).ToString(bytes < 10 * 1_048_576 ? "0.0" : "N0",
            System.Globalization.CultureInfo.InvariantCulture);
}
