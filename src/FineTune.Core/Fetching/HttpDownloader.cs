using System.Net;
using System.Net.Http.Headers;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Fetching;

/// <summary>
/// What a caller other than the fetch stage changes about a download: credentials, and the wording of the errors,
/// which by default speak of <c>stages.fetch</c> and <c>dotnet finetune cache add</c>.
/// </summary>
internal sealed class HttpDownloadOptions
{
    /// <summary>Sent with every request to the URL itself. HttpClient drops it when following a redirect.</summary>
    public AuthenticationHeaderValue? Authorization { get; init; }

    /// <summary>Builds the error for a final (not retried) 4xx answer; null for the fetch stage's wording.</summary>
    public Func<HttpResponseMessage, FineTuneException>? RefusedError { get; init; }

    /// <summary>The last sentence of the "could not download" error: what the user can do instead.</summary>
    public string? UnreachableAdvice { get; init; }

    /// <summary>Builds the error for content whose sha256 is not the expected one; null for the fetch stage's
    /// wording.</summary>
    public Func<string, string, FineTuneException>? MismatchError { get; init; }

    public override string ToString() => "HttpDownloadOptions"; // never print credentials
}

/// <summary>
/// Downloads one URL into a partial file and verifies it. An interrupted transfer resumes with a Range request;
/// network failures, timeouts, 5xx and 429 are retried with exponential backoff; other 4xx answers are final.
/// </summary>
internal sealed class HttpDownloader
{
    public static readonly HttpDownloader Shared = new();

    private readonly HttpClient _client;

    /// <summary>Failed attempts in a row (without receiving a byte) before giving up.</summary>
    public int MaxAttempts { get; init; } = 6;

    /// <summary>Wait after the first failure; doubles after each further failure up to <see
    /// cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the server may stay silent (connecting, before headers, between body reads) before the attempt
    /// is retried.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    public HttpDownloader(HttpClient? client = null)
    {
        // Timeouts are handled per read below: HttpClient.Timeout would cut a slow but healthy large download.
        _client = client ?? new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        if (client is null) _client.DefaultRequestHeaders.UserAgent.ParseAdd("dotnet-finetune");
    }

    /// <summary>
    /// Makes <paramref name="partialPath"/> hold the verified content of <paramref name="url"/>. Resumes from what the
    /// file already holds. Throws <see cref="FineTuneException"/> when the content does not match the pin
    /// (exit code 2) or the server cannot be reached (exit code 3); the partial file is kept in the latter case.
    /// </summary>
    public Task DownloadAsync(Uri url, string partialPath, string expectedSha256, IProgress<StageProgress>? progress,
        CancellationToken ct)
        => DownloadAsync(url, partialPath, expectedSha256, progress, null, ct);

    /// <summary>
    /// As above; a null <paramref name="expectedSha256"/> accepts whatever the server sends (the caller verifies it
    /// some
    /// other way), and <paramref name="options"/> adds credentials and the caller's wording of errors.
    /// </summary>
    public async Task DownloadAsync(Uri url, string partialPath, string? expectedSha256,
        IProgress<StageProgress>? progress,
        HttpDownloadOptions? options, CancellationToken ct)
    {
        var expected = expectedSha256?.ToLowerInvariant();
        var failures = 0;
        var backoff = InitialBackoff;
        var restartedAfterMismatch = false;

        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var resumedFrom = File.Exists(partialPath) ? new FileInfo(partialPath).Length : 0;
            AttemptResult result;
            try
            {
                result = await AttemptAsync(url, partialPath, resumedFrom, progress, options, ct);
            }
            catch (Exception e) when (IsTransient(e, ct))
            {
                var receivedBytes = File.Exists(partialPath) && new FileInfo(partialPath).Length > resumedFrom;
                if (receivedBytes)
                {
                    // Progress was made: the connection is flaky, not dead. Start the count again.
                    failures = 0;
                    backoff = InitialBackoff;
                }
                if (++failures >= MaxAttempts)
                    throw Unreachable(url, failures, e, partialPath, options?.UnreachableAdvice);
                await Task.Delay(RetryDelay(e, backoff), ct);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                continue;
            }

            if (result == AttemptResult.Restart)
            {
                File.Delete(partialPath);
                continue;
            }

            if (expected is null) return;
            var actual = ContentHash.OfFile(partialPath);
            if (actual == expected) return;

            File.Delete(partialPath);
            // A resumed transfer may have glued two versions of the file together; one clean download settles it.
            if (resumedFrom > 0 && !restartedAfterMismatch)
            {
                restartedAfterMismatch = true;
                continue;
            }
            if (options?.MismatchError is { } mismatchError) throw mismatchError(actual, expected);
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.DownloadHashMismatch,
                $"downloaded {url} but its sha256 is {actual}, not the pinned {expected}. " +
                "The file at the URL has changed, or the pin is wrong. Check the source; if the new " +
                "content is right, " +
                "put its sha256 into stages.fetch.sha256. To use a copy you trust, run `dotnet finetune cache " +
                "add <file>`."),
                ExitCodes.InvalidInput);
        }
    }

    private enum AttemptResult { Complete, Restart }

    private async Task<AttemptResult> AttemptAsync(Uri url, string partialPath, long resumeFrom,
        IProgress<StageProgress>? progress,
        HttpDownloadOptions? options, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (resumeFrom > 0) request.Headers.Range = new RangeHeaderValue(resumeFrom, null);
        request.Headers.Authorization = options?.Authorization;

        using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
        idle.CancelAfter(IdleTimeout);
        using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, idle.Token);

        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && resumeFrom > 0)
        {
            // The partial already holds at least the whole file; the hash check decides whether it is right.
            return AttemptResult.Complete;
        }
        if (IsRetryableStatus(response.StatusCode))
            throw new HttpRequestException($"{(int)response.StatusCode} {response.ReasonPhrase}", null,
                response.StatusCode)
            { Data = { ["RetryAfter"] = response.Headers.RetryAfter?.Delta } };
        if (!response.IsSuccessStatusCode && options?.RefusedError is { } refusedError) throw refusedError(response);
        if (!response.IsSuccessStatusCode)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.DownloadRefused,
                $"{url} answered {(int)response.StatusCode} {response.ReasonPhrase}. Check stages.fetch.url; " +
                "to work without the server, download the file by other means and run `dotnet finetune cache " +
                "add <file>`."),
                ExitCodes.StageFailed);

        long offset;
        long total;
        FileMode mode;
        if (response.StatusCode == HttpStatusCode.PartialContent && resumeFrom > 0)
        {
            var range = response.Content.Headers.ContentRange;
            // A range that does not start where our file ends cannot be appended; start over rather than guess.
            if (range?.From != resumeFrom) return AttemptResult.Restart;
            offset = resumeFrom;
            total = range.Length ?? (response.Content.Headers.ContentLength is { } rest ? resumeFrom + rest : 0);
            mode = FileMode.Append;
        }
        else
        {
            // 200 to a Range request: the server ignores ranges and sends the whole file again.
            offset = 0;
            total = response.Content.Headers.ContentLength ?? 0;
            mode = FileMode.Create;
        }

        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(idle.Token);
            await using var file = new FileStream(partialPath, mode, FileAccess.Write, FileShare.None, 1 << 16);
            var buffer = new byte[1 << 16];
            var done = offset;
            var reportedAt = -1L;
            progress?.Report(new StageProgress(done, total, "byte"));
            while (true)
            {
                idle.CancelAfter(IdleTimeout);
                var read = await body.ReadAsync(buffer, idle.Token);
                if (read == 0) break;
                await file.WriteAsync(buffer.AsMemory(0, read), ct);
                done += read;
                if (done - reportedAt >= 1 << 20)
                {
                    // Flushing with each report means bytes we announced survive a crash and count on resume.
                    await file.FlushAsync(ct);
                    progress?.Report(new StageProgress(done, total, "byte"));
                    reportedAt = done;
                }
            }
            progress?.Report(new StageProgress(done, total, "byte"));
            return AttemptResult.Complete;
        }
        catch (IOException e) when (DiskFull.Is(e))
        {
            // Not a network fault: retrying cannot help, and the bytes received so far stay for the next run.
            throw DiskFull.Error(Path.GetDirectoryName(Path.GetFullPath(partialPath))!,
                total > offset ? total - offset : null, e);
        }
    }

    /// <summary>
    /// Sends a small request (metadata, not a file) with the same retries as a download: network failures, silence,
    /// 5xx and 429 are retried with backoff; any other answer goes to <paramref name="read"/>, which turns it into a
    /// result or a final error. Throws FT0304 (exit code 3) when the server stays unreachable.
    /// </summary>
    public async Task<T> SendWithRetriesAsync<T>(HttpClient client, Func<HttpRequestMessage> makeRequest,
        Func<HttpResponseMessage, CancellationToken, Task<T>> read, string unreachableAdvice, CancellationToken ct)
    {
        var failures = 0;
        var backoff = InitialBackoff;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            using var request = makeRequest();
            var url = request.RequestUri!;
            try
            {
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(ct);
                idle.CancelAfter(IdleTimeout);
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead,
                    idle.Token);
                if (IsRetryableStatus(response.StatusCode))
                    throw new HttpRequestException($"{(int)response.StatusCode} {response.ReasonPhrase}", null,
                        response.StatusCode)
                    { Data = { ["RetryAfter"] = response.Headers.RetryAfter?.Delta } };
                return await read(response, idle.Token);
            }
            catch (Exception e) when (IsTransient(e, ct))
            {
                if (++failures >= MaxAttempts) throw Unreachable(url, failures, e, null, unreachableAdvice);
                await Task.Delay(RetryDelay(e, backoff), ct);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
            }
        }
    }

    private static bool IsRetryableStatus(HttpStatusCode status) =>
        status == HttpStatusCode.TooManyRequests || (int)status >= 500;

    private static bool IsTransient(Exception e, CancellationToken ct) => e switch
    {
        FineTuneException => false,
        OperationCanceledException => !ct.IsCancellationRequested, // our idle timeout, not the user's Ctrl+C
        HttpRequestException { StatusCode: { } status } => IsRetryableStatus(status),
        HttpRequestException => true,
        IOException io => !DiskFull.Is(io),
        _ => false,
    };

    private TimeSpan RetryDelay(Exception e, TimeSpan backoff)
    {
        if (e.Data["RetryAfter"] is TimeSpan retryAfter && retryAfter > backoff)
            return retryAfter < MaxBackoff ? retryAfter : MaxBackoff;
        return backoff;
    }

    private static FineTuneException Unreachable(Uri url, int attempts, Exception last, string? partialPath,
        string? advice)
    {
        var reason = last is OperationCanceledException ? "the server stopped answering" : last.Message;
        var kept = partialPath is not null && File.Exists(partialPath) && new FileInfo(partialPath).Length > 0
            ? $" The {new FileInfo(partialPath).Length:N0} bytes received are kept and the next run resumes from them."
            : "";
        return new FineTuneException(Diagnostic.Error(DiagnosticCodes.DownloadFailed,
            $"could not download {url} after {attempts} attempts: {reason}.{kept} " +
            (advice ?? "Check the network and the URL. To work offline, download the file by other means, run " +
            $"`dotnet finetune cache add <file>`, and set {DownloadCache.OfflineVariable}=1.")),
            ExitCodes.StageFailed);
    }
}
