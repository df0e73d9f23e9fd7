using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;

namespace FineTune.Core.Stages;

/// <summary>Stage settings that name a model or tokenizer: a folder beside the pipeline, or a Hub model id.</summary>
internal static class ModelSetting
{
    /// <summary>
    /// A stage setting naming a model or tokenizer: a folder relative to the pipeline file, else a Hub id whose files
    /// matching <paramref name="patterns"/> (default: a whole model) are downloaded. A value that is neither is
    /// reported at the setting's line with <paramref name="code"/> and <paramref name="hint"/>.
    /// </summary>
    public static ModelLocation Resolve(StageContext context, string value, string settingPath, string code,
        string hint, IReadOnlyList<string>? patterns = null, CancellationToken cancellationToken = default)
    {
        var local = context.ResolvePath(value);
        if (Directory.Exists(local)) return new ModelLocation(local, HubCommit: null);
        var snapshot = Located(context, value, settingPath, code, hint, () => ModelSource.ResolveAsync(value,
            HubOptions.FromEnvironment(), context.Log.AsProgress(), cancellationToken, patterns));
        // The Hub cache keeps each revision under snapshots/<commit>, so the folder's name is the commit it pins.
        return new ModelLocation(snapshot, Path.GetFileName(Path.TrimEndingDirectorySeparator(snapshot)));
    }

    /// <summary>
    /// For stage keys: null when the setting names a local folder (its files are hashed), else the Hub's identity of
    /// the files matching <paramref name="patterns"/>, which downloads nothing (see <see
    /// cref="HubClient.IdentifyAsync"/>).
    /// </summary>
    public static HubSnapshotIdentity? IdentifyHub(StageContext context, string value, string settingPath,
        string code, string hint, IReadOnlyList<string> patterns)
    {
        if (Directory.Exists(context.ResolvePath(value))) return null;
        return Located(context, value, settingPath, code, hint, () => ModelSource.IdentifyAsync(value,
            HubOptions.FromEnvironment(), patterns, context.Cancellation));
    }

    private static T Located<T>(StageContext context, string value, string settingPath, string code, string hint,
        Func<Task<T>> fromHub)
    {
        try
        {
            return fromHub().GetAwaiter().GetResult();
        }
        catch (FineTuneException e) when (e.Diagnostics.Count == 1
            && e.Diagnostics[0].Code == DiagnosticCodes.ModelNotFound)
        {
            throw new FineTuneException(context.Pipeline.Locate(settingPath)
                .Error(code, $"'{value}' is neither a folder (relative to the pipeline file) nor a Hugging Face " +
                $"model id; {hint}"));
        }
    }
}
