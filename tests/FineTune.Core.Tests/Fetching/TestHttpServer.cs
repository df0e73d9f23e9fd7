using FineTune.TestKit;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace FineTune.Core.Tests.Fetching;

public sealed record ServerRequest(int Number, string Method, string Path, IReadOnlyDictionary<string, string> Headers)
{
    public string? Range => Headers.TryGetValue("range", out var value) ? value : null;
}

/// <param name="DropAfter">Close the connection after this many body bytes, although Content-Length promised all.</param>
/// <param name="StallAfter">Send this many body bytes, then nothing more until the server is disposed (a stalled
/// transfer, for cancellation).</param>
public sealed record ServerReply(int Status, byte[] Body, IReadOnlyDictionary<string, string>? Headers = null, int? DropAfter = null,
    int? StallAfter = null)
{
    /// <summary>The content, honouring a "bytes=N-" Range request with 206 unless told to ignore ranges (then 200).</summary>
    public static ServerReply Content(byte[] content, ServerRequest request, bool honourRange = true)
    {
        if (honourRange && request.Range is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            var from = int.Parse(range["bytes=".Length..^1]);
            if (from >= content.Length)
                return new ServerReply(416, [], new Dictionary<string, string> { ["Content-Range"] = $"bytes */{content.Length}" });
            return new ServerReply(206, content[from..],
                new Dictionary<string, string> { ["Content-Range"] = $"bytes {from}-{content.Length - 1}/{content.Length}" });
        }
        return new ServerReply(200, content);
    }
}

/// <summary>
/// A raw HTTP/1.1 server on 127.0.0.1 and a free port, one request per connection, scripted by a handler. Raw TCP
/// rather than HttpListener so a test can cut a response in the middle of its body.
/// </summary>
public sealed class TestHttpServer : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Func<ServerRequest, ServerReply> _handler;
    private readonly CancellationTokenSource _stop = new();
    private int _count;

    public ConcurrentQueue<ServerRequest> Requests { get; } = new();

    public TestHttpServer(Func<ServerRequest, ServerReply> handler)
    {
        _handler = handler;
        _listener.Start();
        _ = AcceptLoopAsync();
    }

    public Uri Url(string path) => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}{path}");

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        try
        {
            var stream = client.GetStream();
            var head = await ReadHeadAsync(stream);
            var lines = head.Split("\r\n");
            var requestLine = lines[0].Split(' ');
            var headers = lines.Skip(1).Where(l => l.Contains(':'))
                .ToDictionary(l => l[..l.IndexOf(':')].Trim().ToLowerInvariant(), l => l[(l.IndexOf(':') + 1)..].Trim());
            var request = new ServerRequest(Interlocked.Increment(ref _count), requestLine[0], requestLine[1], headers);
            Requests.Enqueue(request);

            var reply = _handler(request);
            var response = new StringBuilder();
            response.Append($"HTTP/1.1 {reply.Status} {(HttpStatusCode)reply.Status}\r\n");
            response.Append($"Content-Length: {reply.Body.Length}\r\nConnection: close\r\n");
            foreach (var (name, value) in reply.Headers ?? new Dictionary<string, string>()) response.Append($"{name}: {value}\r\n");
            response.Append("\r\n");
            await stream.WriteAsync(Encoding.ASCII.GetBytes(response.ToString()));
            // A HEAD answer announces the body's length but carries no body.
            if (request.Method != "HEAD")
                await stream.WriteAsync(reply.Body.AsMemory(0, Math.Min(reply.DropAfter ?? reply.StallAfter ?? reply.Body.Length, reply.Body.Length)));
            await stream.FlushAsync();
            if (reply.StallAfter is not null && request.Method != "HEAD")
            {
                try { await Task.Delay(Timeout.Infinite, _stop.Token); }
                catch (OperationCanceledException) { }
            }
        }
        catch (IOException)
        {
            // The client went away; nothing to serve.
        }
    }

    private static async Task<string> ReadHeadAsync(NetworkStream stream)
    {
        var bytes = new List<byte>();
        var buffer = new byte[1];
        while (!(bytes.Count >= 4 && bytes[^4] == '\r' && bytes[^3] == '\n' && bytes[^2] == '\r' && bytes[^1] == '\n'))
        {
            if (await stream.ReadAsync(buffer) == 0) throw new IOException("connection closed before the request ended");
            bytes.Add(buffer[0]);
        }
        return Encoding.ASCII.GetString([.. bytes]);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
