namespace FineTune.Core.Hub;

/// <summary>One file of a Hub snapshot as the Hub identifies it.</summary>
/// <param name="Etag">The Hub's content id: the sha256 of an LFS file, the git blob id (sha1) of another.</param>
/// <param name="Size">Bytes; -1 where the Hub did not say.</param>
internal sealed record HubFileIdentity(string Name, string Etag, long Size);

/// <summary>The files of a Hub model at the commit a revision resolved to, known without downloading them.</summary>
internal sealed record HubSnapshotIdentity(HubRepoId Repo, string Commit, IReadOnlyList<HubFileIdentity> Files)
{
    public HubFileIdentity? File(string name) => Files.FirstOrDefault(f => f.Name == name);

    /// <summary>A file as a stage input, under <paramref name="inputName"/>: keyed by its ETag, with the
    /// commit.</summary>
    public Caching.StageInput Input(string inputName, HubFileIdentity file) =>
        Caching.StageInput.HubFile(inputName, file.Etag, file.Size, Commit);
}
