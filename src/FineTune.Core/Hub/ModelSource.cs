using FineTune.Core.Diagnostics;

namespace FineTune.Core.Hub;

/// <summary>
/// Turns what a user names as a model into a folder on disk: an existing folder as it is, else a Hugging Face model id
/// (<c>org/name</c>, optionally <c>org/name@revision</c>) fetched into the Hugging Face cache, or found there offline.
/// </summary>
internal static class ModelSource
{
    /// <summary>The files a tokenizer needs; a stage that only tokenizes downloads no weights.</summary>
    public static readonly IReadOnlyList<string> TokenizerFilePatterns =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

    public static async Task<string> ResolveAsync(string argument, HubOptions options,
        IProgress<StageProgress>? progress, CancellationToken cancellationToken,
        IReadOnlyList<string>? patterns = null)
    {
        if (Directory.Exists(argument)) return Path.GetFullPath(argument);
        var (repo, revision) = ParseHubId(argument);
        return await new HubClient(options).DownloadSnapshotAsync(repo, revision,
            patterns ?? HubClient.ModelFilePatterns, progress, cancellationToken);
    }

    /// <summary>
    /// The Hub's identity of a model id's files matching <paramref name="patterns"/>, without downloading them (see
    /// <see cref="HubClient.IdentifyAsync"/>). The argument must not be an existing folder.
    /// </summary>
    public static Task<HubSnapshotIdentity> IdentifyAsync(string argument, HubOptions options,
        IReadOnlyList<string> patterns, CancellationToken cancellationToken)
    {
        var (repo, revision) = ParseHubId(argument);
        return new HubClient(options).IdentifyAsync(repo, revision, patterns, cancellationToken);
    }

    private static (string Repo, string? Revision) ParseHubId(string argument)
    {
        var at = argument.LastIndexOf('@');
        var (repo, revision) = at > 0 ? (argument[..at], argument[(at + 1)..]) : (argument, (string?)null);
        // Something that reads as a path (./x, ../x, /x, x/y/z) is a folder that does not exist, not a model id.
        if (repo.StartsWith('.') || Path.IsPathRooted(repo) || repo.Count(c => c == '/') != 1)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModelNotFound,
                "model folder not found; give a Hugging Face layout folder (config.json, model.safetensors or " +
                "shards, tokenizer.json) or a model id such as Qwen/Qwen2.5-0.5B-Instruct",
                argument));
        HubRepoId.Parse(repo);
        return (repo, revision);
    }
}
