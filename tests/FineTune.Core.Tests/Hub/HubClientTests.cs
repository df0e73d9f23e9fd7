using System.Text;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Core.Hub;
using FineTune.Core.Stages;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Hub;

public sealed class HubClientTests : IDisposable
{
    private const string Token = "hf_SecretTestToken1234567890";
    private static readonly string[] ModelFiles = ["config.json", "tokenizer.json", "*.safetensors", "generation_config.json"];
    private static readonly HttpDownloader FastDownloader = new()
    {
        InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5), MaxAttempts = 3,
    };

    private readonly TempFolder _home = new();
    private readonly FakeHub _hub = new();

    private string HubCache => Path.Combine(_home.Path, "hub");

    private string RepoFolder => Path.Combine(HubCache, "models--acme--tiny-llama");

    // The fake Hub listens on http://localhost, so the tests opt in to the token over http unless they test that.
    private HubClient Client(bool offline = false, string? token = null, Uri? endpoint = null, bool tokenOverHttp = true) => new(
        HubOptions.FromEnvironment(offline, name => name switch
        {
            "HF_HOME" => _home.Path,
            "HF_ENDPOINT" => (endpoint ?? _hub.Endpoint).ToString(),
            "HF_TOKEN" => token,
            _ => null,
        }) is var options
            ? new HubOptions
            {
                Endpoint = options.Endpoint, Token = options.Token, CacheDirectory = options.CacheDirectory,
                Offline = options.Offline, Downloader = FastDownloader, AllowTokenOverHttp = tokenOverHttp,
            }
            : throw new InvalidOperationException());

    [Fact]
    public async Task A_model_argument_is_a_folder_or_a_hub_id_fetched_into_the_cache()
    {
        var options = Client().Options;
        Assert.Equal(_home.Path, await ModelSource.ResolveAsync(_home.Path, options, null, CancellationToken.None));

        var snapshot = await ModelSource.ResolveAsync(FakeHub.Repo, options, null, CancellationToken.None);
        Assert.Equal(Path.Combine(RepoFolder, "snapshots", FakeHub.Commit), snapshot);
        Assert.True(File.Exists(Path.Combine(snapshot, "config.json")));
        Assert.Equal(snapshot, await ModelSource.ResolveAsync(FakeHub.Repo + "@" + FakeHub.Commit, options, null, CancellationToken.None));

        var missing = await Assert.ThrowsAsync<FineTuneException>(() => ModelSource.ResolveAsync("./no/such/folder", options, null, CancellationToken.None));
        Assert.Equal("FT0621", missing.Diagnostics[0].Code);
    }

    [Fact]
    public async Task Downloads_the_matching_files_into_the_hugging_face_cache_layout()
    {
        var progress = new List<StageProgress>();
        var snapshot = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, new SyncProgress(progress), CancellationToken.None);

        Assert.Equal(Path.Combine(RepoFolder, "snapshots", FakeHub.Commit), snapshot);
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json"],
            Directory.GetFileSystemEntries(snapshot).Select(p => Path.GetFileName(p)!).Order().ToArray());

        var weights = _hub.Files["model.safetensors"];
        var link = new FileInfo(Path.Combine(snapshot, "model.safetensors"));
        Assert.Equal(Path.Combine("..", "..", "blobs", weights.Sha256), link.LinkTarget);
        Assert.Equal(weights.Content, File.ReadAllBytes(link.FullName));
        // Files outside LFS are named by their git object id, as huggingface_hub names them.
        var config = _hub.Files["config.json"];
        Assert.Equal(config.Content, File.ReadAllBytes(Path.Combine(RepoFolder, "blobs", config.GitId)));
        Assert.Equal(config.Content, File.ReadAllBytes(Path.Combine(snapshot, "config.json")));
        Assert.False(File.Exists(Path.Combine(RepoFolder, "blobs", _hub.Files["pytorch_model.bin"].Sha256)));
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoFolder, "blobs"), "*.incomplete"));

        var total = _hub.Files["model.safetensors"].Content.Length + config.Content.Length + _hub.Files["tokenizer.json"].Content.Length;
        Assert.Equal(total, progress[^1].Done);
        Assert.Equal(total, progress[^1].Total);
        Assert.DoesNotContain(_hub.Requests, r => r.Path.Contains("pytorch_model.bin") || r.Path.Contains("README"));
    }

    [Fact]
    public async Task A_second_call_is_served_from_the_cache_without_any_request()
    {
        var first = await Client().DownloadSnapshotAsync(FakeHub.Repo, "main", ModelFiles, null, CancellationToken.None);
        var requests = _hub.Requests.Count();

        var second = await Client().DownloadSnapshotAsync(FakeHub.Repo, "main", ModelFiles, null, CancellationToken.None);
        var byCommit = await Client().DownloadSnapshotAsync(FakeHub.Repo, FakeHub.Commit, ["config.json"], null, CancellationToken.None);

        Assert.Equal(first, second);
        Assert.Equal(first, byCommit);
        Assert.Equal(requests, _hub.Requests.Count());
    }

    [Fact]
    public async Task Asking_for_more_files_later_downloads_only_those()
    {
        await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["config.json"], null, CancellationToken.None);
        var before = _hub.Requests.Count();

        var snapshot = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["config.json", "README.md"], null, CancellationToken.None);

        Assert.True(File.Exists(Path.Combine(snapshot, "README.md")));
        var later = _hub.Requests.Skip(before).ToList();
        Assert.DoesNotContain(later, r => r.Path.EndsWith("config.json"));
        Assert.Contains(later, r => r.Method == "GET" && r.Path.EndsWith("README.md"));
    }

    [Fact]
    public async Task Identifying_files_for_a_key_downloads_nothing_and_reports_the_hubs_etags()
    {
        var identity = await Client().IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);

        Assert.Equal(FakeHub.Commit, identity.Commit);
        var weights = _hub.Files["model.safetensors"];
        Assert.Equal(new HubFileIdentity("model.safetensors", weights.Sha256, weights.Content.Length), identity.File("model.safetensors"));
        var config = _hub.Files["config.json"];
        Assert.Equal(new HubFileIdentity("config.json", config.GitId, config.Content.Length), identity.File("config.json"));
        Assert.Null(identity.File("pytorch_model.bin"));
        // Only the file list (GET of the API) and HEADs: no content, from the Hub or its CDN.
        Assert.All(_hub.Requests, r => Assert.True(r.Method == "HEAD" || r.Path.StartsWith("/api/"), $"{r.Method} {r.Path}"));
        Assert.DoesNotContain(_hub.Requests, r => r.Path.StartsWith("/cdn/"));
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "blobs")));
        // The ref now names the commit the key was computed for, so a download fetches that same commit.
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
    }

    [Fact]
    public async Task Cached_files_are_identified_by_their_blob_names_with_one_request_online_and_none_offline()
    {
        await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);
        var before = _hub.Requests.Count();

        var online = await Client().IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);
        Assert.Equal("/api/models/acme/tiny-llama/revision/main", Assert.Single(_hub.Requests.Skip(before)).Path);
        var offline = await Client(offline: true).IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);
        Assert.Single(_hub.Requests.Skip(before));

        Assert.Equal(online.Files, offline.Files);
        Assert.Equal(_hub.Files["model.safetensors"].Sha256, online.File("model.safetensors")!.Etag);
        Assert.Equal(_hub.Files["tokenizer.json"].GitId, online.File("tokenizer.json")!.Etag);
        var notCached = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(offline: true).IdentifyAsync(FakeHub.Repo, null, ["README.md"], CancellationToken.None));
        Assert.Equal("FT0532", notCached.Diagnostics[0].Code);
    }

    [Fact]
    public async Task A_new_commit_changes_the_commit_and_the_etags_of_changed_files_only()
    {
        var first = await Client().IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);
        await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);

        _hub.CurrentCommit = "89abcdef0123456789abcdef0123456789abcdef";
        _hub.Files["model.safetensors"] = new FakeHub.HubFile([1, 2, 3, 4], Lfs: true);
        var second = await Client().IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);

        Assert.Equal(_hub.CurrentCommit, second.Commit);
        Assert.Equal(first.File("config.json"), second.File("config.json"));
        Assert.Equal(first.File("tokenizer.json"), second.File("tokenizer.json"));
        Assert.Equal(_hub.Files["model.safetensors"].Sha256, second.File("model.safetensors")!.Etag);
        Assert.NotEqual(first.File("model.safetensors"), second.File("model.safetensors"));
        // The next download follows the ref to the new commit.
        var snapshot = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);
        Assert.Equal(Path.Combine(RepoFolder, "snapshots", _hub.CurrentCommit), snapshot);
        Assert.Equal([1, 2, 3, 4], File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
    }

    [Fact]
    public async Task Cancelling_a_stalled_download_stops_it_leaving_a_resumable_part_and_no_blob()
    {
        _hub.StallFirstTransferAfter = 100_000;
        // The server never times out here: only the token can end the transfer.
        var patient = new HttpDownloader { IdleTimeout = TimeSpan.FromMinutes(10) };
        var options = Client().Options;
        var client = new HubClient(new HubOptions
        {
            Endpoint = options.Endpoint, CacheDirectory = options.CacheDirectory, Downloader = patient,
        });
        using var cancel = new CancellationTokenSource();
        var download = client.DownloadSnapshotAsync(FakeHub.Repo, null, ["model.safetensors"], null, cancel.Token);
        await _hub.Stalled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        cancel.CancelAfter(200);

        // A hang guard, not a timing assertion: without the token the transfer would wait ten minutes.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => download.WaitAsync(TimeSpan.FromSeconds(30)));

        var weights = _hub.Files["model.safetensors"];
        var blob = Path.Combine(RepoFolder, "blobs", weights.Sha256);
        Assert.False(File.Exists(blob));
        var part = File.ReadAllBytes(blob + ".incomplete");
        Assert.True(part.Length <= 100_000);
        Assert.Equal(weights.Content[..part.Length], part);
        Assert.False(File.Exists(Path.Combine(RepoFolder, "snapshots", FakeHub.Commit, "model.safetensors")));

        var before = _hub.Requests.Count();
        var snapshot = await client.DownloadSnapshotAsync(FakeHub.Repo, null, ["model.safetensors"], null, CancellationToken.None);
        Assert.Equal(weights.Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        var resumed = _hub.Requests.Skip(before).Single(r => r.Path.StartsWith("/cdn/"));
        Assert.Equal(part.Length > 0 ? $"bytes={part.Length}-" : null, resumed.Range);
    }

    [Fact]
    public async Task Computing_a_key_against_a_hub_that_stops_answering_ends_on_the_token()
    {
        var asked = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var silent = new FineTune.Core.Tests.Fetching.TestHttpServer(_ =>
        {
            asked.TrySetResult();
            return new FineTune.Core.Tests.Fetching.ServerReply(200, new byte[1000], StallAfter: 0);
        });
        var client = new HubClient(new HubOptions
        {
            Endpoint = silent.Url(""), CacheDirectory = HubCache,
            Downloader = new HttpDownloader { IdleTimeout = TimeSpan.FromMinutes(10) },
        });
        using var cancel = new CancellationTokenSource();
        var identify = client.IdentifyAsync(FakeHub.Repo, null, ModelFiles, cancel.Token);
        await asked.Task.WaitAsync(TimeSpan.FromSeconds(30));
        cancel.Cancel();

        // A hang guard, not a timing assertion: without the token the request would wait ten minutes.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => identify.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task A_dropped_transfer_is_resumed_from_where_it_stopped()
    {
        _hub.DropFirstTransferAfter = 100_000;

        var snapshot = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["model.safetensors"], null, CancellationToken.None);

        Assert.Equal(_hub.Files["model.safetensors"].Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        var cdn = _hub.Requests.Where(r => r.Path.StartsWith("/cdn/")).ToList();
        Assert.Equal(2, cdn.Count);
        Assert.Null(cdn[0].Range);
        Assert.Equal("bytes=100000-", cdn[1].Range);
    }

    [Fact]
    public async Task An_interrupted_blob_left_by_an_earlier_run_is_resumed()
    {
        var weights = _hub.Files["model.safetensors"];
        var incomplete = Path.Combine(RepoFolder, "blobs", weights.Sha256 + ".incomplete");
        Directory.CreateDirectory(Path.GetDirectoryName(incomplete)!);
        File.WriteAllBytes(incomplete, weights.Content[..1234]);

        var snapshot = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["model.safetensors"], null, CancellationToken.None);

        Assert.Equal(weights.Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Equal("bytes=1234-", Assert.Single(_hub.Requests, r => r.Path.StartsWith("/cdn/")).Range);
    }

    [Fact]
    public async Task Content_that_does_not_match_the_lfs_sha256_is_refused()
    {
        _hub.CorruptCdnContent = new byte[_hub.Files["model.safetensors"].Content.Length];

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["model.safetensors"], null, CancellationToken.None));

        Assert.Equal("FT0534", error.Diagnostics[0].Code);
        Assert.Contains("model.safetensors", error.Message);
        Assert.Contains(_hub.Files["model.safetensors"].Sha256, error.Message);
        Assert.False(File.Exists(Path.Combine(RepoFolder, "blobs", _hub.Files["model.safetensors"].Sha256)));
    }

    [Fact]
    public async Task A_gated_model_without_a_token_says_to_accept_the_licence_and_set_HF_TOKEN()
    {
        _hub.RequiredToken = Token;

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0530", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        Assert.Contains("gated or private", error.Message);
        Assert.Contains("licence", error.Message);
        Assert.Contains("HF_TOKEN", error.Message);
        Assert.Contains(FakeHub.Repo, error.Message);
        Assert.False(Directory.Exists(Path.Combine(RepoFolder, "snapshots")));
    }

    [Theory]
    [InlineData("https://huggingface.co", "https://huggingface.co/a/resolve/main/x", false, true)]
    [InlineData("https://huggingface.co", "http://huggingface.co/a/resolve/main/x", true, false)] // scheme
    [InlineData("https://huggingface.co", "https://huggingface.co:8443/a", false, false)]        // port
    [InlineData("https://huggingface.co", "https://cdn.example/a", false, false)]                // host
    [InlineData("http://mirror.local:8080", "http://mirror.local:8080/a", false, false)]       // http, no opt-in
    [InlineData("http://mirror.local:8080", "http://mirror.local:8080/a", true, true)]         // http, opted in
    [InlineData("http://mirror.local:8080", "http://mirror.local:8081/a", true, false)]
    public void The_token_goes_only_to_the_endpoints_own_scheme_host_and_port_and_over_http_only_when_asked(
        string endpoint, string url, bool allowHttp, bool sent) =>
        Assert.Equal(sent, HubClient.MaySendToken(new Uri(endpoint), new Uri(url), allowHttp));

    [Fact]
    public async Task Over_http_without_the_opt_in_no_token_is_sent()
    {
        await Assert.ThrowsAnyAsync<Exception>(() =>
        {
            _hub.RequiredToken = Token;
            return Client(token: Token, tokenOverHttp: false).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null,
                CancellationToken.None);
        });
        Assert.NotEmpty(_hub.Requests);
        Assert.All(_hub.Requests, r => Assert.False(r.Headers.ContainsKey("authorization")));
    }

    [Fact]
    public async Task A_wrong_token_is_refused_without_being_printed()
    {
        _hub.RequiredToken = Token;
        const string wrong = "hf_WrongTokenThatMustNotLeak";

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(token: wrong).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0530", error.Diagnostics[0].Code);
        Assert.Contains("was sent but does not give access", error.Message);
        Assert.DoesNotContain(wrong, error.ToString());
        Assert.Contains(_hub.Requests, r => r.Headers.GetValueOrDefault("authorization") == $"Bearer {wrong}");
    }

    [Fact]
    public async Task The_token_is_sent_to_the_hub_but_never_to_the_cdn_nor_into_files_messages_or_options_text()
    {
        _hub.RequiredToken = Token;
        var client = Client(token: Token);

        var snapshot = await client.DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);

        var hubRequests = _hub.Requests.Where(r => !r.Path.StartsWith("/cdn/")).ToList();
        Assert.NotEmpty(hubRequests);
        Assert.All(hubRequests, r => Assert.Equal($"Bearer {Token}", r.Headers["authorization"]));
        var cdnRequests = _hub.Requests.Where(r => r.Path.StartsWith("/cdn/")).ToList();
        Assert.NotEmpty(cdnRequests);
        Assert.All(cdnRequests, r => Assert.False(r.Headers.ContainsKey("authorization")));

        foreach (var file in Directory.EnumerateFiles(_home.Path, "*", SearchOption.AllDirectories))
            Assert.DoesNotContain(Token, Encoding.Latin1.GetString(File.ReadAllBytes(file)));
        Assert.DoesNotContain(Token, client.Options.ToString());
        Assert.True(File.Exists(Path.Combine(snapshot, "model.safetensors")));

        // Errors along the way do not carry it either.
        var missing = await Assert.ThrowsAsync<FineTuneException>(() =>
            client.DownloadSnapshotAsync(FakeHub.Repo, "no-such-branch", ModelFiles, null, CancellationToken.None));
        var unreachable = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(token: Token, endpoint: ClosedPort()).DownloadSnapshotAsync("acme/other", null, ModelFiles, null, CancellationToken.None));
        Assert.DoesNotContain(Token, missing.ToString());
        Assert.DoesNotContain(Token, unreachable.ToString());
    }

    [Fact]
    public async Task An_unknown_model_is_named_in_the_error()
    {
        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client().DownloadSnapshotAsync("acme/no-such-model", null, ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0531", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        Assert.Contains("acme/no-such-model", error.Message);
    }

    [Fact]
    public async Task An_unknown_revision_is_named_in_the_error()
    {
        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client().DownloadSnapshotAsync(FakeHub.Repo, "refs/pr/99", ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0531", error.Diagnostics[0].Code);
        Assert.Contains("'refs/pr/99'", error.Message);
        Assert.Contains(_hub.Requests, r => r.Path.EndsWith("/revision/refs%2Fpr%2F99"));
    }

    [Fact]
    public async Task An_unreachable_hub_leaves_the_key_to_the_cache_and_names_the_network_for_what_is_not_cached()
    {
        await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);
        var online = await Client().IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);

        var unreachable = await Client(endpoint: ClosedPort()).IdentifyAsync(FakeHub.Repo, null, ModelFiles, CancellationToken.None);
        Assert.Equal(online, unreachable with { Files = online.Files });
        Assert.Equal(online.Files, unreachable.Files);

        var notCached = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(endpoint: ClosedPort()).IdentifyAsync(FakeHub.Repo, null, ["README.md"], CancellationToken.None));
        Assert.Equal("FT0304", notCached.Diagnostics[0].Code);
    }

    [Fact]
    public async Task An_unreachable_hub_fails_after_retries_with_exit_code_3()
    {
        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(endpoint: ClosedPort()).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0304", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.StageFailed, error.ExitCode);
        Assert.Contains("after 3 attempts", error.Message);
        Assert.Contains("HF_ENDPOINT", error.Message);
        Assert.Contains("HF_HUB_OFFLINE=1", error.Message);
    }

    [Fact]
    public async Task Offline_mode_uses_the_cache_without_any_request()
    {
        var online = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);

        var offline = await Client(offline: true, endpoint: ClosedPort()).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None);

        Assert.Equal(online, offline);
    }

    [Fact]
    public async Task Offline_mode_names_what_is_not_cached_and_how_to_get_it()
    {
        var notAtAll = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(offline: true).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None));
        await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["config.json"], null, CancellationToken.None);
        var requests = _hub.Requests.Count();
        var partly = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client(offline: true).DownloadSnapshotAsync(FakeHub.Repo, null, ModelFiles, null, CancellationToken.None));

        Assert.Equal("FT0532", notAtAll.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.StageFailed, notAtAll.ExitCode);
        Assert.Contains("acme/tiny-llama", notAtAll.Message);
        Assert.Contains("is not in the Hugging Face cache", notAtAll.Message);
        Assert.Contains("HF_HUB_OFFLINE", notAtAll.Message);
        Assert.Contains("huggingface-cli download acme/tiny-llama", notAtAll.Message);
        Assert.Equal("FT0532", partly.Diagnostics[0].Code);
        Assert.Contains("model.safetensors", partly.Message);
        Assert.Contains("tokenizer.json", partly.Message);
        Assert.Equal(requests, _hub.Requests.Count()); // the offline calls sent nothing
    }

    [Fact]
    public async Task A_snapshot_made_by_python_is_reused_offline_and_online_only_the_file_list_is_asked()
    {
        // What huggingface_hub leaves behind: refs, blobs and snapshot links, and nothing of ours.
        var config = _hub.Files["config.json"];
        var blob = Path.Combine(RepoFolder, "blobs", config.GitId);
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        File.WriteAllBytes(blob, config.Content);
        var snapshotFile = Path.Combine(RepoFolder, "snapshots", FakeHub.Commit, "config.json");
        Directory.CreateDirectory(Path.GetDirectoryName(snapshotFile)!);
        File.CreateSymbolicLink(snapshotFile, Path.Combine("..", "..", "blobs", config.GitId));
        Directory.CreateDirectory(Path.Combine(RepoFolder, "refs"));
        File.WriteAllText(Path.Combine(RepoFolder, "refs", "main"), FakeHub.Commit);

        var offline = await Client(offline: true).DownloadSnapshotAsync(FakeHub.Repo, null, ["config.json"], null, CancellationToken.None);
        var online = await Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["config.json"], null, CancellationToken.None);

        Assert.Equal(Path.GetDirectoryName(snapshotFile), offline);
        Assert.Equal(offline, online);
        Assert.Equal("/api/models/acme/tiny-llama/revision/main", Assert.Single(_hub.Requests).Path);
    }

    [Fact]
    public async Task Patterns_that_match_nothing_list_what_the_repository_holds()
    {
        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            Client().DownloadSnapshotAsync(FakeHub.Repo, null, ["*.gguf"], null, CancellationToken.None));

        Assert.Equal("FT0536", error.Diagnostics[0].Code);
        Assert.Contains("pytorch_model.bin", error.Message);
    }

    [Theory]
    [InlineData("Qwen/Qwen2.5-0.5B-Instruct", "models--Qwen--Qwen2.5-0.5B-Instruct")]
    [InlineData("gpt2", "models--gpt2")]
    public void Repository_ids_map_to_the_cache_folder_names_of_huggingface_hub(string repo, string folder) =>
        Assert.Equal(folder, HubRepoId.Parse(repo).CacheFolderName);

    [Theory]
    [InlineData("../etc")]
    [InlineData("a/b/c")]
    [InlineData("org--x/name")]
    [InlineData("")]
    public void Invalid_repository_ids_are_refused(string repo) =>
        Assert.Equal("FT0535", Assert.Throws<FineTuneException>(() => HubRepoId.Parse(repo)).Diagnostics[0].Code);

    [Fact]
    public void Patterns_match_as_in_huggingface_hub()
    {
        string[] files = ["config.json", "model-00001-of-00002.safetensors", "sub/model.safetensors", "model.safetensors.index.json", "README.md"];

        Assert.Equal(["config.json", "model-00001-of-00002.safetensors", "sub/model.safetensors", "model.safetensors.index.json"],
            HubClient.Select(files, HubClient.ModelFilePatterns));
        Assert.Equal(["sub/model.safetensors"], HubClient.Select(files, ["sub/"]));
    }

    [Fact]
    public void Options_come_from_the_environment_as_huggingface_hub_reads_it()
    {
        var variables = new Dictionary<string, string>
        {
            ["HF_HOME"] = "/data/hf", ["HF_ENDPOINT"] = "https://hf-mirror.com/", ["HF_HUB_TOKEN"] = Token, ["HF_HUB_OFFLINE"] = "1",
        };
        var options = HubOptions.FromEnvironment(getVariable: variables.GetValueOrDefault);
        var withHubCache = HubOptions.FromEnvironment(getVariable: new Dictionary<string, string>
            { ["HF_HOME"] = "/data/hf", ["HF_HUB_CACHE"] = "/fast/hub", ["HF_TOKEN"] = "hf_other" }.GetValueOrDefault);

        Assert.Equal(Path.GetFullPath("/data/hf/hub"), options.CacheDirectory);
        Assert.Equal(new Uri("https://hf-mirror.com"), options.Endpoint);
        Assert.Equal(Token, options.Token);
        Assert.True(options.Offline);
        Assert.DoesNotContain(Token, options.ToString());
        Assert.Equal(Path.GetFullPath("/fast/hub"), withHubCache.CacheDirectory);
        Assert.Equal("hf_other", withHubCache.Token);
        Assert.False(withHubCache.Offline);
        Assert.Equal(new Uri(HubOptions.DefaultEndpoint), withHubCache.Endpoint);
        Assert.EndsWith(Path.Combine(".cache", "huggingface", "hub"),
            HubOptions.DefaultCacheDirectory(_ => null));
    }

    /// <summary>A port nothing listens on: bound, then released.</summary>
    private static Uri ClosedPort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return new Uri($"http://127.0.0.1:{port}");
    }

    private sealed class SyncProgress(List<StageProgress> into) : IProgress<StageProgress>
    {
        public void Report(StageProgress value) => into.Add(value);
    }

    public void Dispose()
    {
        _hub.Dispose();
        _home.Dispose();
    }
}
