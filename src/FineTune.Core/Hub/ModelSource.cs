using FineTune.Core.Diagnostics;
using FineTune.Core.Stages;

namespace FineTune.Core.Hub;

/// <summary>
/// Turns what a user names as a model into a folder on disk: an existing folder as it is, else a Hugging Face model id
/// (<c>org/name</c>, optionally <c>org/name@revision</c>) fetched into the Hugging Face cache, or found there offline.
/// </summary>
public static class ModelSource
{
    public static async Task<string> ResolveAsync(string argument, HubOptions options, IProgress<StageProgress>? progress, CancellationToken cancellationToken)
    {
        if (Directory.Exists(argument)) return Path.GetFullPath(argument);

        var (repo, revision) = Split(argument);
        // Something that reads as a path (./x, ../x, /x, x/y/z) is a folder that does not exist, not a model id.
        if (repo.StartsWith('.') || Path.IsPathRooted(repo) || repo.Count(c => c == '/') != 1)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModelNotFound,
                "model folder not found; give a Hugging Face layout folder (config.json, model.safetensors or shards, tokenizer.json) or a model id such as Qwen/Qwen2.5-0.5B-Instruct",
                argument));
        HubRepoId.Parse(repo);
        return await new HubClient(options).DownloadSnapshotAsync(repo, revision, HubClient.ModelFilePatterns, progress, cancellationToken);
    }

    /// <summary>
    /// A stage setting naming a model or tokenizer: a folder relative to the pipeline file, else a Hub id. A value that
    /// is neither is reported at the setting's line with <paramref name="code"/> and <paramref name="hint"/>.
    /// </summary>
    public static ModelLocation ResolveSetting(StageContext context, string value, string settingPath, string code, string hint)
    {
        var local = context.ResolvePath(value);
        if (Directory.Exists(local)) return new ModelLocation(local, HubCommit: null);
        try
        {
            var snapshot = ResolveAsync(value, HubOptions.FromEnvironment(), null, CancellationToken.None).GetAwaiter().GetResult();
            // The Hub cache keeps each revision under snapshots/<commit>, so the folder's name is the commit it pins.
            return new ModelLocation(snapshot, Path.GetFileName(Path.TrimEndingDirectorySeparator(snapshot)));
        }
        catch (FineTuneException e) when (e.Diagnostics.Count == 1 && e.Diagnostics[0].Code == DiagnosticCodes.ModelNotFound)
        {
            throw new FineTuneException(context.Pipeline.Locate(settingPath).Error(code, $"'{value}' is neither a folder (relative to the pipeline file) nor a Hugging Face model id; {hint}"));
        }
    }

    private static (string Repo, string? Revision) Split(string argument)
    {
        var at = argument.LastIndexOf('@');
        return at > 0 ? (argument[..at], argument[(at + 1)..]) : (argument, null);
    }
}
