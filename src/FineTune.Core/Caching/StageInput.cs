namespace FineTune.Core.Caching;

/// <summary>
/// One thing a stage read, named for humans and identified by content: the one record from which the stage key, the
/// lock file's inputs and <c>run --inputs-file</c> are computed.
/// </summary>
/// <param name="Name">The name in the lock file and in "input changed: ..." ("fetch output",
/// "tokenizer/tokenizer.json").</param>
/// <param name="Sha256">The content hash (the upstream output hash for <see cref="StageInputKind.Upstream"/>; the
/// Hub's ETag for <see cref="StageInputKind.HubFile"/>: the sha256 of an LFS file, the git blob id of another).</param>
/// <param name="Size">Bytes; -1 when unknown (a pinned URL not yet fetched).</param>
/// <param name="Path">Full path of a local or Hub file; null otherwise.</param>
/// <param name="Commit">The Hub commit of a <see cref="StageInputKind.HubFile"/>.</param>
internal sealed record StageInput(string Name, StageInputKind Kind, string Sha256, long Size, string? Path = null,
    string? Commit = null)
{
    public static StageInput Upstream(string stage, StoreEntry entry) =>
        new(stage + " output", StageInputKind.Upstream, entry.OutputHash, entry.Outputs.Values.Sum(o => o.Size));

    /// <summary>A file read from disk, hashed now, or with <paramref name="hashes"/> earlier when its size and
    /// modification time are still those it had then (model files, too large to hash on every run). Files of a Hub
    /// snapshot (under <c>snapshots/&lt;commit&gt;/</c>) are recorded with their commit.</summary>
    public static StageInput File(string name, string path, string? hubCommit = null, FileHashCache? hashes = null) =>
        new(name, hubCommit is null ? StageInputKind.LocalFile : StageInputKind.HubFile,
            hashes?.HashOf(path) ?? ContentHash.OfFile(path),
            new FileInfo(path).Length, System.IO.Path.GetFullPath(path), hubCommit);

    /// <summary>A file of a Hub model identified as the Hub reports it (its ETag), not downloaded to be
    /// hashed.</summary>
    public static StageInput HubFile(string name, string etag, long size, string commit) =>
        new(name, StageInputKind.HubFile, etag, size, null, commit);

    public static StageInput Pinned(string name, string sha256) => new(name, StageInputKind.Pinned, sha256, -1);

    public static StageInput Builtin(string name, string identity)
        => new(name, StageInputKind.Builtin, ContentHash.OfText(identity), identity.Length);
}
