using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Fetching;

/// <summary>
/// The user-level download cache, shared by every pipeline of the user and addressed by content:
/// <c>&lt;root&gt;/downloads/sha256/ab/abcd…</c> holds complete, verified files;
/// <c>&lt;root&gt;/downloads/partial/&lt;hash&gt;.part</c>
/// holds interrupted transfers so the next attempt resumes. A file only ever appears under its final name through an
/// atomic rename, so a crash can leave a partial or a temp file behind but never a truncated "complete" one.
/// </summary>
internal sealed class DownloadCache
{
    public const string OfflineVariable = "FINETUNE_OFFLINE";
    public const string RootVariable = "FINETUNE_CACHE";

    public string Root { get; }

    /// <summary>True to never touch the network: a hash that is not cached is an error (FINETUNE_OFFLINE=1).</summary>
    public bool Offline { get; init; } = Environment.GetEnvironmentVariable(OfflineVariable) == "1";

    public HttpDownloader Downloader { get; init; } = HttpDownloader.Shared;

    /// <summary>How long to wait between looks at a lock held by another process downloading the same file.</summary>
    public TimeSpan LockPollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    public DownloadCache(string root) => Root = Path.GetFullPath(root);

    public static DownloadCache Default() => new(DefaultRoot());

    /// <summary>FINETUNE_CACHE, else the platform's per-user cache folder (XDG on Unix, LocalApplicationData on
    /// Windows).</summary>
    public static string DefaultRoot()
    {
        var overridden = Environment.GetEnvironmentVariable(RootVariable);
        if (!string.IsNullOrWhiteSpace(overridden)) return Path.GetFullPath(overridden);
        if (OperatingSystem.IsWindows())
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "finetune");
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "finetune");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "finetune");
    }

    private string DownloadsDirectory => Path.Combine(Root, "downloads");

    private string PartialDirectory => Path.Combine(DownloadsDirectory, "partial");

    public string PathOf(string sha256)
    {
        var hash = Normalize(sha256);
        return Path.Combine(DownloadsDirectory, "sha256", hash[..2], hash);
    }

    public string PartialPathOf(string sha256) => Path.Combine(PartialDirectory, Normalize(sha256) + ".part");

    /// <summary>The cached file with this content, or null.</summary>
    public string? TryGet(string sha256)
    {
        var path = PathOf(sha256);
        return File.Exists(path) ? path : null;
    }

    /// <summary>
    /// The cached file with this content after hashing it again, or null. A file whose bytes no longer match its name
    /// (a disk fault, an edit) is removed, so the caller fetches it again instead of failing on it every run.
    /// </summary>
    public string? TryGetVerified(string sha256)
    {
        var path = TryGet(sha256);
        if (path is null || ContentHash.OfFile(path) == Normalize(sha256)) return path;
        File.Delete(path);
        return null;
    }

    /// <summary>Copies a file into the cache (<c>dotnet finetune cache add FILE</c>) and returns its sha256.</summary>
    public string Add(string filePath)
    {
        if (!File.Exists(filePath))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.CacheAddFailed,
                $"cannot add '{filePath}' to the download cache: the file does not exist"));

        var hash = ContentHash.OfFile(filePath);
        if (TryGetVerified(hash) is not null) return hash;

        var finalPath = PathOf(hash);
        var directory = Path.GetDirectoryName(finalPath)!;
        Directory.CreateDirectory(directory);
        var temp = Path.Combine(directory, $".{hash}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.Copy(filePath, temp);
            // The source may have changed between hashing and copying; the copy is what enters the cache.
            var copied = ContentHash.OfFile(temp);
            if (copied != hash)
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.CacheAddFailed,
                    $"'{filePath}' changed while it was being added to the download cache; try again"));
            MoveIntoPlace(temp, finalPath);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return hash;
    }

    /// <summary>
    /// The cached file with this content, downloading it from <paramref name="url"/> first when it is missing.
    /// The download resumes from an earlier partial transfer and is verified before it enters the cache.
    /// </summary>
    public async Task<string> GetOrDownloadAsync(Uri url, string sha256, IProgress<StageProgress>? progress,
        CancellationToken ct)
    {
        var hash = Normalize(sha256);
        if (TryGetVerified(hash) is { } cached) return cached;

        if (Offline)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NotInDownloadCache,
                $"{OfflineVariable}=1 and {url} (sha256 {hash}) is not in the download cache at {Root}. " +
                $"Download the file by other means and run `dotnet finetune cache add <file>`, or unset " +
                $"{OfflineVariable}."),
                ExitCodes.StageFailed);

        Directory.CreateDirectory(PartialDirectory);
        using var downloadLock = await AcquireLockAsync(hash, ct);

        // Another process may have finished the same download while we waited for its lock.
        if (TryGetVerified(hash) is { } finishedMeanwhile) return finishedMeanwhile;

        var partial = PartialPathOf(hash);
        await Downloader.DownloadAsync(url, partial, hash, progress, ct);

        var finalPath = PathOf(hash);
        Directory.CreateDirectory(Path.GetDirectoryName(finalPath)!);
        MoveIntoPlace(partial, finalPath);
        return finalPath;
    }

    /// <summary>
    /// One process downloads a given hash at a time: two writers appending to the same partial file would corrupt it.
    /// The lock files are tiny and never deleted, because deleting one would let a waiter lock an unlinked file.
    /// </summary>
    private async Task<FileStream> AcquireLockAsync(string hash, CancellationToken ct)
    {
        var lockPath = Path.Combine(PartialDirectory, hash + ".lock");
        while (true)
        {
            try
            {
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                await Task.Delay(LockPollInterval, ct);
            }
        }
    }

    /// <summary>A rename within the cache root: atomic, so readers see either nothing or the whole file.</summary>
    private static void MoveIntoPlace(string source, string finalPath)
    {
        try
        {
            File.Move(source, finalPath, overwrite: false);
        }
        catch (IOException) when (File.Exists(finalPath))
        {
            // Someone else added the same content first; theirs is identical by construction.
            File.Delete(source);
        }
    }

    private static string Normalize(string sha256)
    {
        if (!ContentHash.IsSha256(sha256))
            throw new ArgumentException($"'{sha256}' is not a sha256 (64 hex digits)", nameof(sha256));
        return sha256.ToLowerInvariant();
    }
}
