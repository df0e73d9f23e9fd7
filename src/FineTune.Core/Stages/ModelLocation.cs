using FineTune.Core.Caching;

namespace FineTune.Core.Stages;

/// <summary>A model or tokenizer folder on disk; <paramref name="HubCommit"/> is set when it is a Hub
/// snapshot.</summary>
internal sealed record ModelLocation(string Folder, string? HubCommit)
{
    /// <summary>A file of the folder as a stage input: a user's file, or a Hub file pinned by its commit. Hashed once
    /// per size and modification time (<see cref="FileHashCache"/>): weights run to gigabytes.</summary>
    public StageInput Input(string name, string file) =>
        StageInput.File(name, file, HubCommit, Hashes);

    private static readonly Lazy<FileHashCache> UserHashes = new(() => new FileHashCache(
        Path.Combine(Fetching.DownloadCache.DefaultRoot(), FileHashCache.FileName)));

    /// <summary>The hashes of this user's model files (<c>$FINETUNE_CACHE/file-hashes.json</c>).</summary>
    public static FileHashCache Hashes => UserHashes.Value;
}
