using System.Text.Json;
using System.Text.Json.Serialization;

namespace FineTune.Core.Caching;

/// <summary>
/// The sha256 of local files, remembered per (full path, size, modification time) in a small JSON file (the user's
/// is <see cref="Stages.ModelLocation.Hashes"/>, in the download cache), so a 16 GB model is hashed once and not on
/// every run. As with git's index and DVC's state, a file whose content changes while its size and modification time
/// are put back is not noticed; a write that leaves the time alone is that rare. A file modified in the last seconds
/// before hashing is not remembered, because a second write within the clock's resolution would leave its time
/// unchanged (git's "racily clean" case).
/// </summary>
internal sealed class FileHashCache
{
    public const string FileName = "file-hashes.json";

    private readonly Lock _gate = new();
    private Dictionary<string, Record>? _records;

    public string Path { get; }

    /// <summary>Smaller files are hashed every time: it costs little, and nothing is taken on trust.</summary>
    public long MinimumSize { get; init; } = 1 << 20;

    /// <summary>How long a file must have stood unmodified before its hash is remembered.</summary>
    public TimeSpan SettleTime { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Files read to hash them through this instance (a test hook).</summary>
    public int FilesHashed => _filesHashed;

    private int _filesHashed;

    public FileHashCache(string path) => Path = System.IO.Path.GetFullPath(path);

    public string HashOf(string file)
    {
        var info = new FileInfo(System.IO.Path.GetFullPath(file));
        if (!info.Exists) throw new FileNotFoundException($"cannot hash '{file}': it does not exist", file);
        if (info.Length < MinimumSize) return Hash(info);
        var (size, modified) = (info.Length, info.LastWriteTimeUtc.Ticks);
        lock (_gate)
        {
            _records ??= Load();
            if (_records.TryGetValue(info.FullName, out var known) && known.Size == size
                && known.Modified == modified && ContentHash.IsSha256(known.Sha256))
                return known.Sha256;
        }

        var hash = Hash(info);
        info.Refresh();
        // Changed while it was read, or modified just now: use the hash, but do not vouch for it later.
        if (info.Length != size || info.LastWriteTimeUtc.Ticks != modified
            || DateTime.UtcNow - info.LastWriteTimeUtc < SettleTime)
            return hash;
        lock (_gate)
        {
            _records![info.FullName] = new Record(size, modified, hash);
            Save();
        }
        return hash;
    }

    private string Hash(FileInfo info)
    {
        Interlocked.Increment(ref _filesHashed);
        return ContentHash.OfFile(info.FullName);
    }

    private sealed record Record(
        [property: JsonPropertyName("size")] long Size,
        [property: JsonPropertyName("modified")] long Modified,
        [property: JsonPropertyName("sha256")] string Sha256);

    private Dictionary<string, Record> Load()
    {
        try
        {
            return File.Exists(Path)
                ? JsonSerializer.Deserialize<Dictionary<string, Record>>(File.ReadAllText(Path)) ?? []
                : [];
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return []; // damaged or unreadable: hash again, which is always right
        }
    }

    /// <summary>
    /// Merges with what other processes wrote meanwhile, drops files that are gone or changed, and replaces the file
    /// atomically. A failure to write only costs hashing again later.
    /// </summary>
    private void Save()
    {
        foreach (var (file, record) in Load()) _records!.TryAdd(file, record);
        foreach (var file in _records!.Keys.ToList())
        {
            var (info, record) = (new FileInfo(file), _records[file]);
            if (!info.Exists || info.Length != record.Size || info.LastWriteTimeUtc.Ticks != record.Modified)
                _records.Remove(file);
        }
        var temporary = $"{Path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
            File.WriteAllText(temporary, JsonSerializer.Serialize(_records));
            File.Move(temporary, Path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temporary); }
            catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { }
        }
    }
}
