using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;

namespace FineTune.Core.Stages;

/// <summary>Stage settings that name a model or tokenizer: a folder beside the pipeline, or a Hub model id.</summary>
internal static class ModelSetting
{
    /// <summary>
    /// A stage setting naming a model or tokenizer: a folder relative to the pipeline file, else a Hub id. A value that
    /// is neither is reported at the setting's line with <paramref name="code"/> and <paramref name="hint"/>.
    /// </summary>
    public static ModelLocation Resolve(StageContext context, string value, string settingPath, string code,
        string hint)
    {
        var local = context.ResolvePath(value);
        if (Directory.Exists(local)) return new ModelLocation(local, HubCommit: null);
        try
        {
            var snapshot = ModelSource.ResolveAsync(value, HubOptions.FromEnvironment(), null, CancellationToken.None)
                .GetAwaiter().GetResult();
            // The Hub cache keeps each revision under snapshots/<commit>, so the folder's name is the commit it pins.
            return new ModelLocation(snapshot, Path.GetFileName(Path.TrimEndingDirectorySeparator(snapshot)));
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
