using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// Brings the training data into the store, unchanged, as <c>data</c> + the source's extension (data.json).
/// A local file is identified by its hash; a URL by its sha256 pin, so the key is known without downloading.
/// </summary>
internal sealed class FetchStage(DownloadCache? cache = null) : Stage<FetchSettings>
{
    public const string DefaultExtension = ".json";

    /// <summary>The summary figure holding the data's source as the pipeline names it (its path or url).</summary>
    public const string SourceSummaryKey = "source";

    private DownloadCache? _cache = cache;

    private DownloadCache Cache => _cache ??= DownloadCache.Default();

    public override string Name => "fetch";

    public override int ImplementationVersion => 1;

    public override IReadOnlyList<string> DependsOn => [];

    protected override IReadOnlyList<StageInput> ReadInputs(StageContext context, FetchSettings settings) =>
        settings.Url is not null
            ? [StageInput.Pinned("url", RequirePin(context, settings))]
            : [CheckedLocalFile(context, settings)];

    protected override async Task RunAsync(StageContext context, FetchSettings settings,
        CancellationToken cancellationToken)
    {
        string source;
        string sourceFile;
        string hash;
        string extension;
        if (settings.Url is not null)
        {
            var url = new Uri(settings.Url);
            hash = RequirePin(context, settings);
            sourceFile = await Cache.GetOrDownloadAsync(url, hash, context.Log.AsProgress(),
                cancellationToken);
            source = settings.Url;
            extension = ExtensionOf(url.AbsolutePath);
        }
        else
        {
            var local = CheckedLocalFile(context, settings);
            (sourceFile, hash) = (local.Path!, local.Sha256);
            source = settings.Path!;
            extension = ExtensionOf(sourceFile);
        }

        cancellationToken.ThrowIfCancellationRequested();
        var target = Path.Combine(context.OutputDirectory, "data" + extension);
        File.Copy(sourceFile, target, overwrite: true);

        // The key was computed from the hash above; the bytes in the output must be those bytes, even if the
        // source file was being rewritten while we copied it.
        var copied = ContentHash.OfFile(target);
        if (copied != hash)
            throw new FineTuneException(context.Pipeline.Locate(settings.Url is null ? "stages.fetch.path"
                : "stages.fetch.url")
                .Error(DiagnosticCodes.SourceChangedDuringFetch,
                    $"'{source}' changed while it was being fetched (sha256 {hash} became {copied}); run again"),
                ExitCodes.StageFailed);

        context.Summary["bytes"] = new FileInfo(target).Length;
        context.Summary["sha256"] = hash;
        context.Summary[SourceSummaryKey] = source;
        context.Log.Info($"fetched {source} ({new FileInfo(target).Length:N0} bytes, sha256 {hash[..12]}…)");
    }

    private static string RequirePin(StageContext context, FetchSettings settings)
    {
        // The settings validator already insists on it; this guards callers that skip validation.
        if (!ContentHash.IsSha256(settings.Sha256))
            throw new FineTuneException(context.Pipeline.Locate("stages.fetch.url")
                .Error(DiagnosticCodes.DataPinMismatch, "a url must be pinned with 'sha256' (64 hex digits) so the " +
                    "data cannot change under the pipeline"));
        return settings.Sha256!.ToLowerInvariant();
    }

    private static StageInput CheckedLocalFile(StageContext context, FetchSettings settings)
    {
        var path = context.ResolvePath(settings.Path!);
        if (!File.Exists(path))
            throw new FineTuneException(context.Pipeline.Locate("stages.fetch.path")
                .Error(DiagnosticCodes.DataFileNotFound, $"the data file '{settings.Path}' does not exist (looked " +
                    $"for {path})"));

        var input = StageInput.File("path", path);
        var hash = input.Sha256;
        if (settings.Sha256 is not null && !string.Equals(hash, settings.Sha256, StringComparison.OrdinalIgnoreCase))
            throw new FineTuneException(context.Pipeline.Locate("stages.fetch.sha256")
                .Error(DiagnosticCodes.DataPinMismatch, $"'{settings.Path}' has sha256 {hash}, not the pinned " +
                    $"{settings.Sha256.ToLowerInvariant()}. " +
                    "If the file was changed on purpose, update sha256 (or remove it); otherwise restore the file."));
        return input;
    }

    /// <summary>The source's extension when it looks like one (".json", ".jsonl"), else .json.</summary>
    internal static string ExtensionOf(string pathOrUrlPath)
    {
        var extension = Path.GetExtension(pathOrUrlPath);
        return extension.Length is > 1 and <= 10 && extension.Skip(1).All(char.IsAsciiLetterOrDigit)
            ? extension.ToLowerInvariant()
            : DefaultExtension;
    }
}
