using FineTune.TestKit;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Core.Stages;

namespace FineTune.Core.Tests.Fetching;

public sealed class DownloadCacheTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly Xunit.Abstractions.ITestOutputHelper _output = output;
    private static readonly byte[] Content = Bytes(300_000, seed: 7);
    private static readonly string ContentHash = FineTune.Core.Caching.ContentHash.OfBytes(Content);

    // Retries must not make the tests slow: a millisecond of backoff exercises the same code.
    private static readonly HttpDownloader FastDownloader = new() { InitialBackoff = TimeSpan.FromMilliseconds(1), MaxBackoff = TimeSpan.FromMilliseconds(5), MaxAttempts = 3 };

    private DownloadCache NewCache(bool offline = false) => new(_temp.Folder("cache")) { Downloader = FastDownloader, Offline = offline };

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Downloads_verifies_and_then_serves_from_the_cache()
    {
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request));
        var cache = NewCache();
        var progress = new RecordingProgress();

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, progress, CancellationToken.None);

        Assert.Equal(Path.Combine(cache.Root, "downloads", "sha256", ContentHash[..2], ContentHash), path);
        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.False(File.Exists(cache.PartialPathOf(ContentHash)));
        Assert.Equal(new StageProgress(Content.Length, Content.Length, "byte"), progress.Reports[^1]);

        var again = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash.ToUpperInvariant(), null, CancellationToken.None);
        Assert.Equal(path, again);
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task Cancelling_a_stalled_download_stops_it_and_the_next_attempt_resumes()
    {
        var stalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var server = new TestHttpServer(request =>
        {
            // The first transfer stalls; the next one, whether it resumes or starts over, completes.
            if (!stalled.TrySetResult()) return ServerReply.Content(Content, request);
            return ServerReply.Content(Content, request) with { StallAfter = 100_000 };
        });
        // The server never times out here: only the token can end the transfer.
        var cache = new DownloadCache(_temp.Folder("cache")) { Downloader = new HttpDownloader { IdleTimeout = TimeSpan.FromMinutes(10) } };
        using var cancel = new CancellationTokenSource();
        var download = cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, cancel.Token);
        await stalled.Task.WaitAsync(TimeSpan.FromSeconds(30));
        cancel.CancelAfter(200);

        // A hang guard, not a timing assertion: without the token the transfer would wait ten minutes.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => download.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Null(cache.TryGet(ContentHash));
        var part = File.ReadAllBytes(cache.PartialPathOf(ContentHash));
        Assert.True(part.Length <= 100_000);
        Assert.Equal(Content[..part.Length], part);

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);
        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Equal(part.Length > 0 ? $"bytes={part.Length}-" : null, server.Requests.Last().Range);
    }

    [Theory]
    [InlineData("flip")]
    [InlineData("truncate")]
    public async Task A_damaged_cached_file_is_hashed_again_on_use_and_downloaded_again(string damage)
    {
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request));
        var cache = NewCache();
        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);
        if (damage == "flip")
        {
            var bytes = File.ReadAllBytes(path);
            bytes[1234] ^= 0x40;
            File.WriteAllBytes(path, bytes);
        }
        else File.WriteAllBytes(path, Content[..1000]);

        var again = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);
        Assert.Equal(path, again);
        Assert.Equal(Content, File.ReadAllBytes(again));
        Assert.Equal(2, server.Requests.Count);
    }

    [Fact]
    public async Task A_connection_dropped_mid_body_resumes_with_a_range_request()
    {
        using var server = new TestHttpServer(request => request.Number == 1
            ? new ServerReply(200, Content, DropAfter: 100_000)
            : ServerReply.Content(Content, request));
        var cache = NewCache();

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);

        Assert.Equal(Content, File.ReadAllBytes(path));
        var requests = server.Requests.ToArray();
        Assert.Equal(2, requests.Length);
        Assert.Null(requests[0].Range);
        Assert.Equal("bytes=100000-", requests[1].Range);
    }

    [Fact]
    public async Task A_server_that_ignores_range_sends_everything_and_the_partial_is_rewritten()
    {
        var cache = NewCache();
        Directory.CreateDirectory(Path.GetDirectoryName(cache.PartialPathOf(ContentHash))!);
        File.WriteAllBytes(cache.PartialPathOf(ContentHash), Content[..1234]);
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request, honourRange: false));

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);

        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Equal("bytes=1234-", Assert.Single(server.Requests).Range);
    }

    [Fact]
    public async Task A_partial_that_is_already_complete_is_verified_after_416()
    {
        var cache = NewCache();
        Directory.CreateDirectory(Path.GetDirectoryName(cache.PartialPathOf(ContentHash))!);
        File.WriteAllBytes(cache.PartialPathOf(ContentHash), Content);
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request));

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);

        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Equal($"bytes={Content.Length}-", Assert.Single(server.Requests).Range);
    }

    [Fact]
    public async Task A_resume_that_glued_two_versions_together_is_downloaded_again_from_scratch()
    {
        var oldVersion = Bytes(Content.Length, seed: 8);
        using var server = new TestHttpServer(request => request.Number == 1
            ? new ServerReply(200, oldVersion, DropAfter: 100_000)
            : ServerReply.Content(Content, request));
        var cache = NewCache();

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);

        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Equal([null, "bytes=100000-", null], server.Requests.Select(r => r.Range));
    }

    [Fact]
    public async Task Service_unavailable_is_retried()
    {
        using var server = new TestHttpServer(request => request.Number == 1
            ? new ServerReply(503, "busy"u8.ToArray())
            : ServerReply.Content(Content, request));
        var cache = NewCache();

        var path = await cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None);

        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests.Count);
    }

    [Fact]
    public async Task A_full_disk_is_not_retried_as_a_network_fault_and_says_how_much_was_needed()
    {
        using var small = SmallFilesystem.TryMount(128, out var whyNot);
        if (small is null) { _output.WriteLine($"skipped: {whyNot}"); return; }
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request));
        var cache = new DownloadCache(small.Path) { Downloader = FastDownloader };

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None));

        Assert.Equal(DiagnosticCodes.DiskFull, error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.StageFailed, error.ExitCode);
        Assert.Contains($"disk full at {Path.Combine(small.Path, "downloads", "partial")} (needed about 0.3 MB", error.Message);
        Assert.Single(server.Requests);
        Assert.DoesNotContain("network", error.Message);
    }

    [Fact]
    public async Task Not_found_is_not_retried()
    {
        using var server = new TestHttpServer(_ => new ServerReply(404, "no"u8.ToArray()));
        var cache = NewCache();

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            cache.GetOrDownloadAsync(server.Url("/missing.json"), ContentHash, null, CancellationToken.None));

        Assert.Equal("FT0305", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.StageFailed, error.ExitCode);
        Assert.Contains("404", error.Message);
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task An_unreachable_server_fails_after_the_retries_and_says_how_to_work_offline()
    {
        using var server = new TestHttpServer(_ => new ServerReply(503, []));
        var cache = NewCache();

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            cache.GetOrDownloadAsync(server.Url("/data.json"), ContentHash, null, CancellationToken.None));

        Assert.Equal("FT0304", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.StageFailed, error.ExitCode);
        Assert.Contains("cache add", error.Message);
        Assert.Equal(FastDownloader.MaxAttempts, server.Requests.Count);
    }

    [Fact]
    public async Task A_wrong_hash_is_an_error_and_nothing_enters_the_cache()
    {
        using var server = new TestHttpServer(request => ServerReply.Content(Content, request));
        var cache = NewCache();
        var pinned = new string('a', 64);
        var url = server.Url("/data.json");

        var error = await Assert.ThrowsAsync<FineTuneException>(() => cache.GetOrDownloadAsync(url, pinned, null, CancellationToken.None));

        Assert.Equal("FT0303", error.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        Assert.Contains(url.ToString(), error.Message);
        Assert.Contains(pinned, error.Message);
        Assert.Contains(ContentHash, error.Message);
        Assert.Null(cache.TryGet(pinned));
        Assert.Null(cache.TryGet(ContentHash));
        Assert.False(File.Exists(cache.PartialPathOf(pinned)));
    }

    [Fact]
    public async Task Added_files_are_served_offline_without_a_server()
    {
        var file = _temp.File("local.json");
        File.WriteAllBytes(file, Content);

        var hash = NewCache().Add(file);

        Assert.Equal(ContentHash, hash);
        var offline = NewCache(offline: true);
        // Port 9 (discard) on loopback is closed; the offline cache must not even try it.
        var path = await offline.GetOrDownloadAsync(new Uri("http://127.0.0.1:9/data.json"), hash, null, CancellationToken.None);
        Assert.Equal(Content, File.ReadAllBytes(path));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp"));
    }

    [Fact]
    public async Task Offline_without_the_file_says_to_add_it()
    {
        var offline = NewCache(offline: true);

        var error = await Assert.ThrowsAsync<FineTuneException>(() =>
            offline.GetOrDownloadAsync(new Uri("http://127.0.0.1:9/data.json"), ContentHash, null, CancellationToken.None));

        Assert.Equal("FT0306", error.Diagnostics[0].Code);
        Assert.Contains("dotnet finetune cache add <file>", error.Message);
    }

    [Fact]
    public void Adding_the_same_content_twice_keeps_one_copy()
    {
        var a = _temp.File("a.json");
        var b = _temp.File("b.json");
        File.WriteAllBytes(a, Content);
        File.WriteAllBytes(b, Content);
        var cache = NewCache();

        Assert.Equal(cache.Add(a), cache.Add(b));
        Assert.Single(Directory.GetFiles(Path.Combine(cache.Root, "downloads", "sha256"), "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void The_root_follows_FINETUNE_CACHE()
    {
        var previous = Environment.GetEnvironmentVariable(DownloadCache.RootVariable);
        try
        {
            Environment.SetEnvironmentVariable(DownloadCache.RootVariable, _temp.Path);
            Assert.Equal(_temp.Path, DownloadCache.Default().Root);
        }
        finally
        {
            Environment.SetEnvironmentVariable(DownloadCache.RootVariable, previous);
        }
    }

    internal static byte[] Bytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private sealed class RecordingProgress : IProgress<StageProgress>
    {
        public List<StageProgress> Reports { get; } = [];
        public void Report(StageProgress value) => Reports.Add(value);
    }
}
