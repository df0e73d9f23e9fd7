using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;

namespace FineTune.Core.Hub;

/// <summary>
/// Fetches model repositories from the Hugging Face Hub (or a mirror) into the standard Hugging Face cache:
/// <code>
/// &lt;cache&gt;/models--org--name/blobs/&lt;etag&gt;              the content, named by the Hub's ETag (sha256 for LFS
/// files)
/// snapshots/&lt;commit&gt;/&lt;file&gt;   a symlink to the blob (a copy where links are not allowed)
///                          refs/&lt;revision&gt;           the commit the revision pointed at
/// </code>
/// which is the layout Python's huggingface_hub reads and writes, so a model either one downloaded is reused by the
/// other. One addition, ignored by Python: <c>.finetune/&lt;commit&gt;.json</c> lists the files of that commit, so a
/// later call can tell a complete snapshot from a partial one without asking the Hub.
/// </summary>
internal sealed class HubClient
{
    /// <summary>The files a causal language model needs: configuration, tokenizer and safetensors weights.</summary>
    public static readonly IReadOnlyList<string> ModelFilePatterns =
    [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "*.safetensors", "model.safetensors.index.json",
    ];

    private const string ManifestFolder = ".finetune";

    // Metadata requests must see the Hub's own answer to a file, not the CDN's it redirects to: the LFS sha256 and size
    // are headers of the redirect. Downloads follow redirects (HttpDownloader's client), and HttpClient drops the
    // Authorization header when it does, so the token never reaches the CDN.
    private static readonly HttpClient MetadataClient = CreateMetadataClient();

    public HubOptions Options { get; }

    public HubClient(HubOptions options) => Options = options;

    /// <summary>
    /// Makes the files of <paramref name="repo"/> at <paramref name="revision"/> (default <c>main</c>) whose names
    /// match <paramref name="allowPatterns"/> (<c>*</c> and <c>?</c> wildcards) present in the cache and returns the
    /// snapshot folder holding them. A snapshot already complete in the cache is returned without any request.
    /// Interrupted transfers resume; LFS files are verified against their sha256.
    /// </summary>
    public async Task<string> DownloadSnapshotAsync(string repo, string? revision, IReadOnlyList<string> allowPatterns,
        IProgress<StageProgress>? progress, CancellationToken ct)
    {
        var id = HubRepoId.Parse(repo);
        revision = string.IsNullOrWhiteSpace(revision) ? "main" : revision.Trim();
        ValidateRevision(revision);
        var repoFolder = Path.Combine(Options.CacheDirectory, id.CacheFolderName);

        var (cachedSnapshot, missingFromCache) = FindInCache(id, repoFolder, revision, allowPatterns);
        if (cachedSnapshot is not null) return cachedSnapshot;
        if (Options.Offline) throw NotCached(id, revision, missingFromCache);

        var (commit, repoFiles) = await GetRevisionAsync(id, revision, ct);
        WriteManifest(repoFolder, commit, repoFiles);
        var wanted = Select(repoFiles, allowPatterns);
        if (wanted.Count == 0) throw NothingMatches(id, revision, allowPatterns, repoFiles);

        var snapshot = Path.Combine(repoFolder, "snapshots", commit);
        var toFetch = new List<RemoteFile>();
        foreach (var file in wanted.Where(f => !IsCachedFile(SnapshotPath(snapshot, f))))
            toFetch.Add(await GetFileMetadataAsync(id, commit, file, ct));

        var total = toFetch.Sum(f => f.Size ?? 0);
        var done = 0L;
        foreach (var file in toFetch)
        {
            var fileProgress = progress is null ? null : new OffsetProgress(progress, done, total, file.Name);
            var blob = await FetchBlobAsync(id, repoFolder, commit, file, fileProgress, ct);
            LinkIntoSnapshot(SnapshotPath(snapshot, file.Name), blob);
            done += file.Size ?? new FileInfo(blob).Length;
        }

        // Written last, so the ref of a revision only ever points at a snapshot that holds what was asked for.
        if (!string.Equals(revision, commit, StringComparison.OrdinalIgnoreCase))
            WriteRef(repoFolder, revision, commit);
        return snapshot;
    }

    /// <summary>
    /// What the files of <paramref name="repo"/> at <paramref name="revision"/> matching <paramref name="patterns"/>
    /// are, without downloading any of them: the commit the revision points at (one small request to the Hub, none
    /// for a commit hash already listed), and each file's ETag and size. The ETag is the Hub's content id (the sha256
    /// of an LFS file, the git blob id of another), read from the cache's blob name where the file is cached, else
    /// from a HEAD request. Online, the revision's ref is updated, so a later download fetches the same commit. A Hub
    /// that cannot be reached leaves the cache to answer, as offline.
    /// </summary>
    public async Task<HubSnapshotIdentity> IdentifyAsync(string repo, string? revision,
        IReadOnlyList<string> patterns, CancellationToken ct)
    {
        var id = HubRepoId.Parse(repo);
        revision = string.IsNullOrWhiteSpace(revision) ? "main" : revision.Trim();
        ValidateRevision(revision);
        var repoFolder = Path.Combine(Options.CacheDirectory, id.CacheFolderName);

        string commit;
        IReadOnlyList<string> repoFiles;
        var cacheOnly = Options.Offline;
        FineTuneException? unreachable = null;
        if (cacheOnly)
            (commit, repoFiles) = CachedRevision(repoFolder, revision) ?? throw NotCached(id, revision, null);
        else if (HubRepoId.IsCommitHash(revision)
            && ReadManifest(repoFolder, revision.ToLowerInvariant()) is { } listed)
            (commit, repoFiles) = (revision.ToLowerInvariant(), listed);
        else
        {
            try
            {
                (commit, repoFiles) = await GetRevisionAsync(id, revision, ct);
                WriteManifest(repoFolder, commit, repoFiles);
                if (!string.Equals(revision, commit, StringComparison.OrdinalIgnoreCase))
                    WriteRef(repoFolder, revision, commit);
            }
            catch (FineTuneException e) when (e.Diagnostics.Count == 1
                && e.Diagnostics[0].Code == DiagnosticCodes.DownloadFailed
                && CachedRevision(repoFolder, revision) is { } cached)
            {
                // The Hub cannot be reached: as in huggingface_hub, the cache's answer stands in, which is also the
                // snapshot a download would then use.
                (commit, repoFiles, cacheOnly, unreachable) = (cached.Commit, cached.Files, true, e);
            }
        }

        var wanted = Select(repoFiles, patterns);
        if (wanted.Count == 0) throw NothingMatches(id, revision, patterns, repoFiles);
        var snapshot = Path.Combine(repoFolder, "snapshots", commit);
        var files = new List<HubFileIdentity>();
        var missing = new List<string>();
        foreach (var file in wanted)
        {
            var path = SnapshotPath(snapshot, file);
            if (CachedBlobIdentity(repoFolder, path) is { } cached) files.Add(cached with { Name = file });
            else if (!cacheOnly)
            {
                var remote = await GetFileMetadataAsync(id, commit, file, ct);
                files.Add(new HubFileIdentity(file, remote.Etag, remote.Size ?? -1));
            }
            // A copy where links are not allowed names no blob: offline, its content is all there is to go by.
            else if (File.Exists(path))
                files.Add(new HubFileIdentity(file, Caching.ContentHash.OfFile(path), new FileInfo(path).Length));
            else missing.Add(file);
        }
        if (missing.Count > 0) throw unreachable ?? NotCached(id, revision, missing);
        return new HubSnapshotIdentity(id, commit, files);
    }

    /// <summary>The commit the cache's ref names for a revision and that commit's files (our list, else what the
    /// snapshot holds), or null when the cache knows neither.</summary>
    private static (string Commit, IReadOnlyList<string> Files)? CachedRevision(string repoFolder, string revision)
    {
        var commit = HubRepoId.IsCommitHash(revision) ? revision.ToLowerInvariant() : ReadRef(repoFolder, revision);
        if (commit is null) return null;
        if (ReadManifest(repoFolder, commit) is { } listed) return (commit, listed);
        var snapshot = Path.Combine(repoFolder, "snapshots", commit);
        if (!Directory.Exists(snapshot)) return null;
        return (commit, Directory.EnumerateFiles(snapshot, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(snapshot, f).Replace('\\', '/')).ToList());
    }

    /// <summary>A snapshot file that links to its blob: the blob's name is the ETag it was stored under.</summary>
    private static HubFileIdentity? CachedBlobIdentity(string repoFolder, string snapshotFile)
    {
        var info = new FileInfo(snapshotFile);
        if (info.LinkTarget is null || info.ResolveLinkTarget(returnFinalTarget: true) is not FileInfo { Exists: true }
            blob) return null;
        var blobs = Path.GetFullPath(Path.Combine(repoFolder, "blobs"));
        if (!string.Equals(Path.GetDirectoryName(blob.FullName), blobs, StringComparison.Ordinal)) return null;
        return NormalizeEtag(blob.Name) is { } etag ? new HubFileIdentity("", etag, blob.Length) : null;
    }

    // ---- the cache -----------------------------------------------------------------------------------------------

    private (string? Snapshot, IReadOnlyList<string>? Missing) FindInCache(HubRepoId id, string repoFolder,
        string revision,
        IReadOnlyList<string> patterns)
    {
        var commit = HubRepoId.IsCommitHash(revision) ? revision.ToLowerInvariant() : ReadRef(repoFolder, revision);
        if (commit is null) return (null, null);
        var snapshot = Path.Combine(repoFolder, "snapshots", commit);
        if (!Directory.Exists(snapshot)) return (null, null);

        if (ReadManifest(repoFolder, commit) is { } repoFiles)
        {
            var wanted = Select(repoFiles, patterns);
            if (wanted.Count == 0) throw NothingMatches(id, revision, patterns, repoFiles);
            var missing = wanted.Where(f => !IsCachedFile(SnapshotPath(snapshot, f))).ToList();
            return missing.Count == 0 ? (snapshot, null) : (null, missing);
        }

        // A snapshot written by Python: the Hub alone knows whether it is complete, so online we ask (and download only
        // what is missing). Offline, what is there is all there is; the model loader names a file it cannot do without.
        if (!Options.Offline) return (null, null);
        var present = Directory.EnumerateFiles(snapshot, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(snapshot, f).Replace('\\', '/'))
            .Where(f => IsCachedFile(SnapshotPath(snapshot, f)));
        return Select(present.ToList(), patterns).Count > 0 ? (snapshot, null) : (null, null);
    }

    private static string? ReadRef(string repoFolder, string revision)
    {
        var path = Path.Combine(repoFolder, "refs", revision);
        if (!File.Exists(path)) return null;
        var commit = File.ReadAllText(path).Trim();
        return HubRepoId.IsCommitHash(commit) ? commit.ToLowerInvariant() : null;
    }

    private static void WriteRef(string repoFolder, string revision, string commit) =>
        WriteAtomically(Path.Combine(repoFolder, "refs", revision), commit);

    private static IReadOnlyList<string>? ReadManifest(string repoFolder, string commit)
    {
        var path = Path.Combine(repoFolder, ManifestFolder, commit + ".json");
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<List<string>>(File.ReadAllText(path));
        }
        catch (JsonException)
        {
            return null; // damaged: ask the Hub again
        }
    }

    private static void WriteManifest(string repoFolder, string commit, IReadOnlyList<string> files) =>
        WriteAtomically(Path.Combine(repoFolder, ManifestFolder, commit + ".json"), JsonSerializer.Serialize(files));

    private static void WriteAtomically(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + $".{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    private static string SnapshotPath(string snapshot, string file) =>
        Path.Combine([snapshot, .. file.Split('/')]);

    /// <summary>A file, or a link whose blob is still there (a blob deleted by hand leaves a dangling link).</summary>
    private static bool IsCachedFile(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null) return info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true };
        return info.Exists;
    }

    private static void LinkIntoSnapshot(string snapshotFile, string blob)
    {
        var folder = Path.GetDirectoryName(snapshotFile)!;
        Directory.CreateDirectory(folder);
        var existing = new FileInfo(snapshotFile);
        if (existing.Exists || existing.LinkTarget is not null) existing.Delete();
        try
        {
            // Relative, as huggingface_hub makes them, so the cache folder can be moved or mounted elsewhere.
            File.CreateSymbolicLink(snapshotFile, Path.GetRelativePath(folder, blob));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            // Windows without developer mode cannot make links; a copy costs disk but reads the same.
            var temp = snapshotFile + $".{Guid.NewGuid():N}.tmp";
            File.Copy(blob, temp);
            File.Move(temp, snapshotFile, overwrite: true);
        }
    }

    private async Task<string> FetchBlobAsync(HubRepoId id, string repoFolder, string commit, RemoteFile file,
        IProgress<StageProgress>? progress, CancellationToken ct)
    {
        var blobs = Directory.CreateDirectory(Path.Combine(repoFolder, "blobs")).FullName;
        var blob = Path.Combine(blobs, file.Etag);
        if (File.Exists(blob)) return blob;

        // The lock file huggingface_hub uses for the same blob, so the two never write one .incomplete file together.
        var lockFolder = Directory.CreateDirectory(Path.Combine(Options.CacheDirectory, ".locks", id.CacheFolderName))
            .FullName;
        using var blobLock = await AcquireLockAsync(Path.Combine(lockFolder, file.Etag + ".lock"), ct);
        if (File.Exists(blob)) return blob;

        var incomplete = blob + ".incomplete";
        var sha256 = Caching.ContentHash.IsSha256(file.Etag) ? file.Etag.ToLowerInvariant() : null;
        var url = ResolveUrl(id, commit, file.Name);
        var options = DownloadOptions(id, commit, file.Name);
        await Options.Downloader.DownloadAsync(url, incomplete, sha256, progress, options, ct);

        // Files outside LFS have no sha256 to check; their announced size catches a transfer glued from two versions.
        if (file.Size is { } size && new FileInfo(incomplete).Length != size)
        {
            File.Delete(incomplete);
            await Options.Downloader.DownloadAsync(url, incomplete, sha256, progress, options, ct);
            if (new FileInfo(incomplete).Length is var length && length != size)
            {
                File.Delete(incomplete);
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubDownloadCorrupted,
                    $"downloaded '{file.Name}' of model '{id}' (commit {commit}) but received {length:N0} " +
                    $"bytes, not the " +
                    $"{size:N0} the Hub announced. Run again; if it persists, the server at " +
                    $"{Options.Endpoint} serves " +
                    $"inconsistent files: try another {HubOptions.EndpointVariable}."), ExitCodes.StageFailed);
            }
        }

        try
        {
            File.Move(incomplete, blob, overwrite: false);
        }
        catch (IOException) when (File.Exists(blob))
        {
            File.Delete(incomplete); // another writer got there first with the same content
        }
        return blob;
    }

    private async Task<FileStream> AcquireLockAsync(string lockPath, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                await Task.Delay(Options.LockPollInterval, ct);
            }
        }
    }

    // ---- the Hub's endpoints -------------------------------------------------------------------------------------

    private sealed record RemoteFile(string Name, string Etag, long? Size);

    private async Task<(string Commit, IReadOnlyList<string> Files)> GetRevisionAsync(HubRepoId id, string revision,
        CancellationToken ct)
    {
        var url = EndpointUrl($"api/models/{id.Id}/revision/{Uri.EscapeDataString(revision)}");
        return await Options.Downloader.SendWithRetriesAsync(MetadataClient, () => Request(HttpMethod.Get, url),
            async (response, token) =>
        {
            if (!response.IsSuccessStatusCode) throw Refused(response, id, revision, null);
            try
            {
                await using var body = await response.Content.ReadAsStreamAsync(token);
                using var json = await JsonDocument.ParseAsync(body, cancellationToken: token);
                var commit = json.RootElement.GetProperty("sha").GetString();
                var files = json.RootElement.GetProperty("siblings").EnumerateArray()
                    .Select(s => s.GetProperty("rfilename").GetString()!)
                    .ToList();
                if (commit is null || !HubRepoId.IsCommitHash(commit))
                    throw new JsonException("no commit hash in 'sha'");
                if (files.Any(f => !IsSafeRelativePath(f)))
                    throw new JsonException("a file name leaves the repository folder");
                return (commit.ToLowerInvariant(), (IReadOnlyList<string>)files);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NotAHubEndpoint,
                    $"{url} did not answer like the Hugging Face Hub API ({e.Message}). Check " +
                    $"{HubOptions.EndpointVariable} " +
                    $"(now {Options.Endpoint}): it must be the Hub or a mirror of it."), ExitCodes.StageFailed);
            }
        }, UnreachableAdvice, ct);
    }

    /// <summary>HEAD of the file's resolve URL: its ETag (the LFS sha256, else the git object id) and size.</summary>
    private async Task<RemoteFile> GetFileMetadataAsync(HubRepoId id, string commit, string file, CancellationToken ct)
    {
        var url = ResolveUrl(id, commit, file);
        for (var redirects = 0; ; redirects++)
        {
            var current = url;
            var (metadata, next) = await Options.Downloader.SendWithRetriesAsync(MetadataClient,
                () => Request(HttpMethod.Head, current),
                (response, _) =>
                {
                    var location = response.Headers.Location;
                    var status = (int)response.StatusCode;
                    var isRedirect = status is >= 300 and < 400 && location is not null;
                    // A renamed repository redirects within the Hub: follow it (the token goes along only to the
                    // same scheme, host and port).
                    if (isRedirect && SameServer(current, new Uri(current, location!))
                        && Header(response, "X-Linked-Etag") is null)
                        return Task.FromResult<(RemoteFile?, Uri?)>((null, new Uri(current, location!)));
                    if (!response.IsSuccessStatusCode && !isRedirect) throw Refused(response, id, commit, file);

                    var etag = NormalizeEtag(Header(response, "X-Linked-Etag") ?? Header(response, "ETag"));
                    if (etag is null)
                        throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NotAHubEndpoint,
                            $"{current} answered without an ETag, so '{file}' cannot be stored in the Hugging " +
                            $"Face cache. " +
                            $"Check {HubOptions.EndpointVariable} (now {Options.Endpoint}): it must be the Hub or a " +
                            $"mirror of it."),
                            ExitCodes.StageFailed);
                    var sizeText = Header(response, "X-Linked-Size");
                    long? size = long.TryParse(sizeText, out var linked) ? linked : isRedirect ? null
                        : response.Content.Headers.ContentLength;
                    return Task.FromResult<(RemoteFile?, Uri?)>((new RemoteFile(file, etag, size), null));
                }, UnreachableAdvice, ct);
            if (metadata is not null) return metadata;
            if (redirects >= 5)
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NotAHubEndpoint,
                    $"{url} redirects in a loop."), ExitCodes.StageFailed);
            url = next!;
        }
    }

    private HttpDownloadOptions DownloadOptions(HubRepoId id, string commit, string file) => new()
    {
        Authorization = Authorization(ResolveUrl(id, commit, file)),
        RefusedError = response => Refused(response, id, commit, file),
        UnreachableAdvice = UnreachableAdvice,
        MismatchError = (actual, expected) => new FineTuneException(Diagnostic.Error(
            DiagnosticCodes.HubDownloadCorrupted,
            $"downloaded '{file}' of model '{id}' (commit {commit}) but its sha256 is {actual}, not {expected} " +
            $"as the Hub " +
            $"announced. The transfer was corrupted or the server at {Options.Endpoint} serves different " +
            $"content; run " +
            $"again, and if it persists try another {HubOptions.EndpointVariable}."), ExitCodes.StageFailed),
    };

    private HttpRequestMessage Request(HttpMethod method, Uri url)
    {
        var request = new HttpRequestMessage(method, url);
        request.Headers.Authorization = Authorization(url);
        return request;
    }

    private AuthenticationHeaderValue? Authorization(Uri url) =>
        Options.Token is { } token && MaySendToken(Options.Endpoint, url, Options.AllowTokenOverHttp)
            ? new AuthenticationHeaderValue("Bearer", token) : null;

    /// <summary>
    /// The token goes only to the endpoint's own scheme, host and port, and only over https unless the user opted in
    /// for an http mirror: anything else would hand it to whoever listens on the way or answers a redirect.
    /// </summary>
    internal static bool MaySendToken(Uri endpoint, Uri url, bool allowHttp) => SameServer(endpoint, url)
        && (url.Scheme == Uri.UriSchemeHttps || (allowHttp && url.Scheme == Uri.UriSchemeHttp));

    private static bool SameServer(Uri a, Uri b) => Uri.Compare(a, b,
        UriComponents.SchemeAndServer | UriComponents.Port, UriFormat.Unescaped,
        StringComparison.OrdinalIgnoreCase) == 0;

    private Uri ResolveUrl(HubRepoId id, string commit, string file) =>
        EndpointUrl($"{id.Id}/resolve/{commit}/{string.Join('/', file.Split('/').Select(Uri.EscapeDataString))}");

    private Uri EndpointUrl(string relative) => new(Options.Endpoint.ToString().TrimEnd('/') + "/" + relative);

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static string? NormalizeEtag(string? etag)
    {
        if (etag is null) return null;
        if (etag.StartsWith("W/", StringComparison.Ordinal)) etag = etag[2..];
        etag = etag.Trim().Trim('"');
        // The ETag names a file in blobs/; anything but a plain token could escape that folder.
        return etag.Length > 0 && etag.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? etag : null;
    }

    private static HttpClient CreateMetadataClient()
    {
        var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false })
        {
            Timeout = Timeout.InfiniteTimeSpan
        };
        client.DefaultRequestHeaders.UserAgent.ParseAdd("dotnet-finetune");
        return client;
    }

    // ---- matching ------------------------------------------------------------------------------------------------

    /// <summary>The files matching any pattern, in repository order. As in huggingface_hub, <c>*</c> also matches
    /// '/'.</summary>
    public static IReadOnlyList<string> Select(IReadOnlyList<string> files, IReadOnlyList<string> patterns)
    {
        var regexes = patterns.Select(p => new Regex("^" + Regex.Escape(p.EndsWith('/') ? p + "*" : p)
            .Replace(@"\*", ".*").Replace(@"\?", ".") + "$", RegexOptions.CultureInvariant)).ToList();
        return files.Where(f => regexes.Any(r => r.IsMatch(f))).ToList();
    }

    private static bool IsSafeRelativePath(string file) =>
        file.Length > 0 && !file.StartsWith('/') && !file.Contains('\\')
            && file.Split('/').All(part => part is not ("" or "." or ".."));

    private static void ValidateRevision(string revision)
    {
        if (!IsSafeRelativePath(revision))
            throw new FineTuneException(DiagnosticCodes.InvalidModelId,
                $"'{revision}' is not a revision: give a branch (main), a tag, or a commit hash.");
    }

    // ---- errors (none of them may contain the token) -------------------------------------------------------------

    private const string TokenAdvice =
        "create an access token at https://huggingface.co/settings/tokens and set " + HubOptions.TokenVariable +
        " to it";

    private string UnreachableAdvice =>
        $"Check the network. Where the Hub is blocked, set {HubOptions.EndpointVariable} to a mirror (for example " +
        $"https://hf-mirror.com). To use only what is already in the Hugging Face cache at {Options.CacheDirectory}, " +
        $"set {HubOptions.OfflineVariable}=1.";

    private FineTuneException Refused(HttpResponseMessage response, HubRepoId id, string revision, string? file)
    {
        var status = (int)response.StatusCode;
        var errorCode = Header(response, "X-Error-Code");
        var tokenState = Options.Token is null
            ? $"No token was sent ({HubOptions.TokenVariable} is not set)."
            : $"The token in {HubOptions.TokenVariable} was sent but does not give access to it.";

        if (errorCode == "GatedRepo"
            || (errorCode is null && response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden))
            return new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubAccessDenied,
                $"the Hub refused access to model '{id}' ({status}): it is gated or private. {tokenState} Log in at " +
                $"{Options.Endpoint.ToString().TrimEnd('/')}/{id}, accept the model's licence there (gated " +
                $"models), then " +
                $"{TokenAdvice}."), ExitCodes.InvalidInput);
        if (errorCode == "RepoNotFound")
            return new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubNotFound,
                $"model '{id}' was not found on {Options.Endpoint} ({status}). Check the model id (as in " +
                $"https://huggingface.co/<org>/<name>); if it is private, {TokenAdvice}. {tokenState}"),
                ExitCodes.InvalidInput);
        if (errorCode == "RevisionNotFound" || (errorCode is null && response.StatusCode == HttpStatusCode.NotFound
            && file is null))
            return new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubNotFound,
                $"model '{id}' at revision '{revision}' was not found on {Options.Endpoint} ({status}): the " +
                $"model id or " +
                "the revision (branch, tag or commit) is wrong. Check both on the model's page on the Hub."),
                ExitCodes.InvalidInput);
        if (response.StatusCode == HttpStatusCode.NotFound || errorCode == "EntryNotFound")
            return new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubNotFound,
                $"file '{file}' of model '{id}' (commit {revision}) was not found on {Options.Endpoint} ({status}), " +
                "although the Hub listed it. Run again; if it persists, the server is not a complete mirror."),
                ExitCodes.StageFailed);
        return new FineTuneException(Diagnostic.Error(DiagnosticCodes.HubRequestFailed,
            $"the Hub at {Options.Endpoint} answered {status} {response.ReasonPhrase} for model '{id}'" +
            (file is null ? "" : $", file '{file}'") + ". Check the model id and revision."), ExitCodes.StageFailed);
    }

    private FineTuneException NotCached(HubRepoId id, string revision, IReadOnlyList<string>? missing)
    {
        var what = missing is { Count: > 0 }
            ? $"model '{id}' revision '{revision}' is only partly in the Hugging Face cache at " +
                $"{Options.CacheDirectory}: " +
              $"{string.Join(", ", missing.Take(5))}" +
              $"{(missing.Count > 5 ? $" and {missing.Count - 5} more" : "")} not cached"
            : $"model '{id}' revision '{revision}' is not in the Hugging Face cache at {Options.CacheDirectory}";
        return new FineTuneException(Diagnostic.Error(DiagnosticCodes.NotInHubCache,
            $"offline mode ({HubOptions.OfflineVariable}=1 or --offline), and {what}. Run once with network " +
            $"access (without " +
            $"offline mode), or copy the model into this cache (e.g. `huggingface-cli download {id}` with " +
            $"{HubOptions.HomeVariable} set to the same folder), or give the path of a local model folder instead."),
            ExitCodes.StageFailed);
    }

    private static FineTuneException NothingMatches(HubRepoId id, string revision, IReadOnlyList<string> patterns,
        IReadOnlyList<string> files) =>
        new(Diagnostic.Error(DiagnosticCodes.NoModelFilesOnHub,
            $"model '{id}' at revision '{revision}' has no file matching {string.Join(", ", patterns)}; it holds " +
            $"{string.Join(", ", files.Take(10))}{(files.Count > 10 ? ", ..." : "")}. A model needs config.json and " +
            "safetensors weights (a pytorch_model.bin checkpoint must be converted to safetensors first)."),
            ExitCodes.InvalidInput);

    private sealed class OffsetProgress(IProgress<StageProgress> inner, long offset, long total, string file)
        : IProgress<StageProgress>
    {
        public void Report(StageProgress value) =>
            inner.Report(new StageProgress(offset + value.Done, Math.Max(total, offset + value.Total), "byte", file));
    }
}
