using FineTune.Core.Tests.Fetching;
using FineTune.TestKit;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.Core.Tests.Stages;

public sealed class FetchStageTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private static readonly byte[] Data = """[{"instruction": "hi", "input": "", "output": "hello"}]"""u8.ToArray();

    public void Dispose() => _temp.Dispose();

    private DownloadCache Cache() => new(_temp.Folder("cache"))
    {
        Downloader = new HttpDownloader { InitialBackoff = TimeSpan.FromMilliseconds(1), MaxAttempts = 2 },
        Offline = false,
    };

    [Fact]
    public async Task A_local_file_is_keyed_by_its_hash_and_copied_unchanged()
    {
        Directory.CreateDirectory(_temp.Folder("data"));
        File.WriteAllBytes(_temp.File("data/train.jsonl"), Data);
        var pipeline = StageContexts.Pipeline(_temp.Path);
        pipeline.Stages.Fetch.Path = "data/train.jsonl";
        var stage = new FetchStage(Cache());
        var context = StageContexts.For(pipeline, "fetch", _temp.File("out"));

        var input = Assert.Single(stage.ReadInputs(context));
        await stage.RunAsync(context, CancellationToken.None);

        Assert.Equal(new StageInput("path", StageInputKind.LocalFile, ContentHash.OfBytes(Data), Data.Length, _temp.File("data/train.jsonl")), input);
        Assert.Equal(["data.jsonl"], Directory.GetFiles(context.OutputDirectory).Select(Path.GetFileName));
        Assert.Equal(Data, File.ReadAllBytes(_temp.File("out/data.jsonl")));
        Assert.Equal((long)Data.Length, context.Summary["bytes"]);
        Assert.Equal(ContentHash.OfBytes(Data), context.Summary["sha256"]);
        Assert.Equal("data/train.jsonl", context.Summary["source"]);
    }

    [Fact]
    public void A_missing_local_file_is_reported_at_the_path_setting()
    {
        var pipeline = StageContexts.Pipeline(_temp.Path, key => key == "stages.fetch.path" ? new SourceLocation("pipeline.yaml", 4, 11) : null);
        pipeline.Stages.Fetch.Path = "nowhere.json";
        var context = StageContexts.For(pipeline, "fetch", _temp.File("out"));

        var error = Assert.Throws<FineTuneException>(() => new FetchStage(Cache()).ReadInputs(context));

        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0301", 4, 11), (diagnostic.Code, diagnostic.Line, diagnostic.Column));
        Assert.Contains("nowhere.json", diagnostic.Message);
    }

    [Fact]
    public void A_local_file_that_does_not_match_its_pin_is_reported_at_the_sha256_setting()
    {
        File.WriteAllBytes(_temp.File("data.json"), Data);
        var pipeline = StageContexts.Pipeline(_temp.Path, key => key == "stages.fetch.sha256" ? new SourceLocation("pipeline.yaml", 5, 13) : null);
        pipeline.Stages.Fetch.Path = "data.json";
        pipeline.Stages.Fetch.Sha256 = new string('0', 64);
        var context = StageContexts.For(pipeline, "fetch", _temp.File("out"));

        var error = Assert.Throws<FineTuneException>(() => new FetchStage(Cache()).ReadInputs(context));

        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0302", 5), (diagnostic.Code, diagnostic.Line));
        Assert.Contains(ContentHash.OfBytes(Data), diagnostic.Message);
    }

    [Fact]
    public async Task A_url_is_keyed_by_its_pin_without_downloading_then_fetched_through_the_cache()
    {
        using var server = new TestHttpServer(request => ServerReply.Content(Data, request));
        var hash = ContentHash.OfBytes(Data);
        var pipeline = StageContexts.Pipeline(_temp.Path);
        pipeline.Stages.Fetch.Url = server.Url("/datasets/huanhuan.JSON?raw=true").ToString();
        pipeline.Stages.Fetch.Sha256 = hash.ToUpperInvariant();
        var cache = Cache();
        var stage = new FetchStage(cache);
        var log = new RecordingLog();
        var context = StageContexts.For(pipeline, "fetch", _temp.File("out"), log: log);

        var input = Assert.Single(stage.ReadInputs(context));
        Assert.Equal(new StageInput("url", StageInputKind.Pinned, hash, -1), input);
        Assert.Empty(server.Requests);

        await stage.RunAsync(context, CancellationToken.None);

        Assert.Equal(Data, File.ReadAllBytes(_temp.File("out/data.json")));
        Assert.NotNull(cache.TryGet(hash));
        Assert.Equal(Data.Length, log.Progresses[^1].Done);
        Assert.Equal(pipeline.Stages.Fetch.Url, context.Summary["source"]);
    }

    [Theory]
    [InlineData("/x/huanhuan.json", ".json")]
    [InlineData("/x/huanhuan.jsonl", ".jsonl")]
    [InlineData("/x/download", ".json")]
    [InlineData("/x/weird.j$on", ".json")]
    public void The_output_keeps_the_source_extension(string path, string extension) =>
        Assert.Equal(extension, FetchStage.ExtensionOf(path));
}
