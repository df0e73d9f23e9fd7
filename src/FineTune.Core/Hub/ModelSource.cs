using FineTune.Core.Diagnostics;

namespace FineTune.Core.Hub;

/// <summary>
/// Turns what a user names as a model into a folder on disk: an existing folder as it is, else a Hugging Face model id
/// (<c>org/name</c>, optionally <c>org/name@revision</c>) fetched into the Hugging Face cache, or found there offline.
/// </summary>
internal static class ModelSource
{
    public static async Task<string> ResolveAsync(string argument, HubOptions options,
        IProgress<StageProgress>? progress, CancellationToken cancellationToken)
    {
        if (Directory.Exists(argument)) return Path.GetFullPath(argument);

        var (repo, revision) = Split(argument);
        // Something that reads as a path (./x, ../x, /x, x/y/z) is a folder that does not exist, not a model id.
        if (repo.StartsWith('.') || Path.IsPathRooted(repo) || repo.Count(c => c == '/') != 1)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModelNotFound,
                "model folder not found; give a Hugging Face layout folder (config.json, model.safetensors or " +
                "shards, tokenizer.json) or a model id such as Qwen/Qwen2.5-0.5B-Instruct",
                argument));
        HubRepoId.Parse(repo);
        return await new HubClient(options).DownloadSnapshotAsync(repo, revision, HubClient.ModelFilePatterns, progress,
            cancellationToken);
    }

    private static (string Repo, string? Revision) Split(string argument)
    {
        var at = argument.LastIndexOf('@');
        return at > 0 ? (argument[..at], argument[(at + 1)..]) : (argument, null);
    }
}
