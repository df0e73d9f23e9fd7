using FineTune.Core.Tests.Fetching;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Hub;

/// <summary>
/// A Hugging Face Hub on 127.0.0.1, answering as huggingface.co does: the revision API, HEAD and GET of
/// <c>resolve</c> URLs (files outside LFS from the Hub itself with a git-id ETag; LFS files as a 302 to a CDN path with
/// <c>X-Linked-Etag</c> = sha256 and <c>X-Linked-Size</c>), 401 with <c>X-Error-Code: GatedRepo</c> for a gated
/// model without the right token, 404s for unknown models and revisions.
/// </summary>
public sealed class FakeHub : IDisposable
{
    public const string Repo = "acme/tiny-llama";
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";

    /// <summary>The commit <c>main</c> points at now; a test moves it to publish a new version of the files.</summary>
    public string CurrentCommit { get; set; } = Commit;

    public sealed record HubFile(byte[] Content, bool Lfs)
    {
        public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));
        public string GitId => Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));
    }

    public Dictionary<string, HubFile> Files { get; } = new()
    {
        ["config.json"] = new(Encoding.UTF8.GetBytes("""{"model_type":"llama","hidden_size":8}"""), Lfs: false),
        ["tokenizer.json"] = new(Encoding.UTF8.GetBytes("""{"version":"1.0","model":{"type":"BPE"}}"""), Lfs: false),
        ["model.safetensors"] = new(Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7 % 251)).ToArray(), Lfs: true),
        ["pytorch_model.bin"] = new(new byte[1000], Lfs: true),
        ["README.md"] = new(Encoding.UTF8.GetBytes("# tiny"), Lfs: false),
    };

    /// <summary>When set, the model is gated: every request must carry <c>Authorization: Bearer {token}</c>.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>The first CDN transfer of each LFS file is cut after this many bytes.</summary>
    public int? DropFirstTransferAfter { get; set; }

    /// <summary>The first CDN transfer of each LFS file stalls after this many bytes (until the hub is
    /// disposed).</summary>
    public int? StallFirstTransferAfter { get; set; }

    /// <summary>Completed when a transfer has stalled.</summary>
    public TaskCompletionSource Stalled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The CDN serves these bytes instead of the real content (a corrupt mirror).</summary>
    public byte[]? CorruptCdnContent { get; set; }

    public TestHttpServer Server { get; }

    public Uri Endpoint => Server.Url("");

    private readonly HashSet<string> _dropped = [];

    public FakeHub() => Server = new TestHttpServer(Handle);

    public IEnumerable<ServerRequest> Requests => Server.Requests;

    private ServerReply Handle(ServerRequest request)
    {
        var path = Uri.UnescapeDataString(request.Path);
        if (path.StartsWith("/cdn/", StringComparison.Ordinal)) return Cdn(path["/cdn/".Length..], request);

        if (RequiredToken is not null && (!request.Headers.TryGetValue("authorization", out var auth) || auth != $"Bearer {RequiredToken}"))
            return Json(401, """{"error":"Access to model acme/tiny-llama is restricted."}""", ("X-Error-Code", "GatedRepo"));

        var apiPrefix = "/api/models/";
        if (request.Path.StartsWith(apiPrefix, StringComparison.Ordinal))
        {
            // The revision stays escaped in the path: "refs%2Fpr%2F1" is one segment.
            var parts = request.Path[apiPrefix.Length..].Split('/');
            if ($"{parts[0]}/{parts[1]}" != Repo) return Json(404, """{"error":"Repository not found"}""");
            var revision = Uri.UnescapeDataString(parts[3]);
            if (revision != "main" && revision != CurrentCommit) return Json(404, """{"error":"Invalid rev id"}""", ("X-Error-Code", "RevisionNotFound"));
            var body = JsonSerializer.Serialize(new { id = Repo, sha = CurrentCommit, siblings = Files.Keys.Select(k => new { rfilename = k }) });
            return Json(200, body);
        }

        var resolvePrefix = $"/{Repo}/resolve/{CurrentCommit}/";
        if (path.StartsWith(resolvePrefix, StringComparison.Ordinal) && Files.TryGetValue(path[resolvePrefix.Length..], out var file))
        {
            if (file.Lfs)
                return new ServerReply(302, [], new Dictionary<string, string>
                {
                    ["Location"] = Server.Url($"/cdn/{file.Sha256}").ToString(),
                    ["X-Linked-Etag"] = $"\"{file.Sha256}\"",
                    ["X-Linked-Size"] = file.Content.Length.ToString(),
                    ["X-Repo-Commit"] = CurrentCommit,
                    ["ETag"] = "\"not-the-content-hash\"",
                });
            var reply = ServerReply.Content(file.Content, request);
            return reply with { Headers = new Dictionary<string, string>(reply.Headers ?? new Dictionary<string, string>())
            {
                ["ETag"] = $"\"{file.GitId}\"",
                ["X-Repo-Commit"] = CurrentCommit,
            } };
        }
        return Json(404, """{"error":"Entry not found"}""", ("X-Error-Code", "EntryNotFound"));
    }

    private ServerReply Cdn(string sha256, ServerRequest request)
    {
        var file = Files.Values.First(f => f.Sha256 == sha256);
        var reply = ServerReply.Content(CorruptCdnContent ?? file.Content, request);
        if (DropFirstTransferAfter is { } dropAfter && _dropped.Add(sha256)) return reply with { DropAfter = dropAfter };
        if (StallFirstTransferAfter is { } stallAfter && _dropped.Add(sha256))
        {
            Stalled.TrySetResult();
            return reply with { StallAfter = stallAfter };
        }
        return reply;
    }

    private static ServerReply Json(int status, string body, params (string Name, string Value)[] headers) =>
        new(status, Encoding.UTF8.GetBytes(body), headers.ToDictionary(h => h.Name, h => h.Value));

    public void Dispose() => Server.Dispose();
}
