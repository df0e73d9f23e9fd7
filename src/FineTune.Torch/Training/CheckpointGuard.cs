using System.Text.Json;
using FineTune.Core;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.Torch.Training;

/// <summary>
/// What a train run is, written as run.json beside its checkpoint: the pipeline it belongs to, its flattened settings
/// (train.* as in the lock file), the hash of its training data, the device and the stage version.
/// </summary>
internal sealed record RunIdentity(string Pipeline, string Key, IReadOnlyDictionary<string, string> Settings,
    string Data, string Device, int Implementation);

/// <summary>
/// Guards resuming across a settings change. Work folders are per stage key, so a run with changed settings has a new,
/// empty one, while the checkpoint of the interrupted run sits in the old one. Starting over silently would throw hours
/// away; resuming silently would train a different run than the file says. So the stage refuses and lists the changes
/// (setting: old -> new), and the user decides: --restart discards the old checkpoint; --resume-with-changes moves it
/// into the new run and continues, which is allowed only when every change is in <see cref="ResumableSettings"/>.
/// The checkpoint's files are <see cref="TrainingCheckpoint"/>'s.
/// </summary>
internal static class CheckpointGuard
{
    public const string IdentityFile = "run.json";

    /// <summary>
    /// The settings a checkpoint survives (declared on <see cref="TrainSettings"/> with <c>[SurvivesResume]</c>).
    /// </summary>
    public static IReadOnlySet<string> ResumableSettings { get; } = new HashSet<string>(TrainSettings.ResumableKeys,
        StringComparer.Ordinal);

    /// <summary>
    /// Before training: applies <paramref name="policy"/> to checkpoints of other runs of this pipeline's stage
    /// (sibling folders of <paramref name="workDirectory"/>) and records <paramref name="current"/> in the work folder.
    /// Returns the changes a resumed-with-changes checkpoint carried (empty otherwise).
    /// </summary>
    public static IReadOnlyList<string> Prepare(string workDirectory, string stage, RunIdentity current,
        CheckpointPolicy policy, IStageLog log)
    {
        Directory.CreateDirectory(workDirectory);
        var own = Path.GetFullPath(workDirectory);
        var others = OtherCheckpoints(own, stage, current.Pipeline);
        IReadOnlyList<string> carried = [];
        if (policy == CheckpointPolicy.Restart)
        {
            var checkpoint = TrainingCheckpoint.FolderIn(own);
            var discarded = others.Count + (Directory.Exists(checkpoint) ? 1 : 0);
            foreach (var (folder, _) in others) Directory.Delete(folder, recursive: true);
            if (Directory.Exists(checkpoint)) Directory.Delete(checkpoint, recursive: true);
            if (discarded > 0) log.Info($"--restart: discarded {discarded} checkpoint(s) of interrupted runs");
        }
        else if (!Directory.Exists(TrainingCheckpoint.FolderIn(own)) && others.Count > 0)
        {
            var (folder, saved) = others[0];
            var changes = Differences(saved, current);
            var fixedChanges = changes.Where(c => !ResumableSettings.Contains(c.Setting)).ToList();
            var listing = string.Join("; ", changes.Select(c => $"{c.Setting}: {c.Old} -> {c.New}"));
            if (policy != CheckpointPolicy.ResumeWithChanges)
                throw new FineTuneException(DiagnosticCodes.CheckpointSettingsChanged,
                    $"a checkpoint of an interrupted {stage} run (step {StepOf(folder)}, " +
                    $"{TrainingCheckpoint.FolderIn(folder)}) has other settings: {listing}. "
                    + "Run with --restart to discard it and start over, or with --resume-with-changes to continue " +
                    "from it "
                    + (fixedChanges.Count == 0 ? "with the new settings."
                        : $"(not possible here: {string.Join(", ", fixedChanges.Select(c => c.Setting))} cannot " +
                            $"change in a running training)."),
                    ExitCodes.InvalidInput);
            if (fixedChanges.Count > 0)
                throw new FineTuneException(DiagnosticCodes.CheckpointCannotTakeChanges,
                    $"--resume-with-changes: the checkpoint in {TrainingCheckpoint.FolderIn(folder)} cannot continue " +
                    $"with these changes: "
                    + string.Join("; ", fixedChanges.Select(c => $"{c.Setting}: {c.Old} -> {c.New}"))
                    + $". Only {string.Join(", ", ResumableSettings.Order(StringComparer.Ordinal))} may change; run " +
                    $"with --restart to start over.",
                    ExitCodes.InvalidInput);
            // Adopt the checkpoint: it now belongs to this run's key, so the trainer resumes it like its own.
            Directory.Move(TrainingCheckpoint.FolderIn(folder), TrainingCheckpoint.FolderIn(own));
            TrainingCheckpoint.Adopt(own, current.Key);
            Directory.Delete(folder, recursive: true);
            carried = [.. changes.Select(c => $"{c.Setting}: {c.Old} -> {c.New}")];
            log.Info($"--resume-with-changes: continuing the interrupted run from step {StepOf(own)} with {listing}");
        }
        File.WriteAllText(Path.Combine(own, IdentityFile), JsonSerializer.Serialize(current, JsonText.Indented));
        return carried;
    }

    private sealed record Change(string Setting, string Old, string New);

    private static List<Change> Differences(RunIdentity saved, RunIdentity current)
    {
        var changes = saved.Settings.Keys.Union(current.Settings.Keys).Order(StringComparer.Ordinal)
            .Where(k => saved.Settings.GetValueOrDefault(k) != current.Settings.GetValueOrDefault(k))
            .Select(k => new Change(k, saved.Settings.GetValueOrDefault(k) ?? "(unset)",
                current.Settings.GetValueOrDefault(k) ?? "(unset)"))
            .ToList();
        if (saved.Data != current.Data) changes.Add(new("training data", Short(saved.Data), Short(current.Data)));
        // A device may change under a checkpoint, the number of data-parallel ranks may not ("cpu (2 ranks)"): it
        // decides which examples make up each optimizer step.
        if (saved.Device != current.Device)
            changes.Add(new(Ranks(saved.Device) == Ranks(current.Device) ? "device" : "data-parallel ranks",
                saved.Device, current.Device));
        if (saved.Implementation != current.Implementation)
            changes.Add(new("train stage version", saved.Implementation.ToString(), current.Implementation.ToString()));
        return changes;
    }

    private static string Ranks(string device) =>
        device.IndexOf(" (", StringComparison.Ordinal) is var at and >= 0 ? device[at..] : " (1 rank)";

    private static string Short(string hash) => hash.Length > 12 ? hash[..12] : hash;

    /// <summary>
    /// Checkpoints left in other work folders of this stage by runs of the same pipeline, newest first.
    /// </summary>
    private static List<(string Folder, RunIdentity Identity)> OtherCheckpoints(string own, string stage,
        string pipeline)
    {
        var parent = Path.GetDirectoryName(own);
        if (parent is null || !Directory.Exists(parent)) return [];
        var found = new List<(string Folder, RunIdentity Identity, DateTime Written)>();
        foreach (var folder in Directory.EnumerateDirectories(parent, stage + "-*"))
        {
            if (Path.GetFullPath(folder) == own) continue;
            var state = TrainingCheckpoint.StatePathIn(folder);
            var identityPath = Path.Combine(folder, IdentityFile);
            if (!File.Exists(state) || !File.Exists(identityPath)) continue;
            RunIdentity? identity;
            try { identity = JsonSerializer.Deserialize<RunIdentity>(File.ReadAllText(identityPath)); }
            catch (JsonException) { continue; }
            if (identity is null || identity.Pipeline != pipeline) continue;
            found.Add((folder, identity, File.GetLastWriteTimeUtc(state)));
        }
        return [.. found.OrderByDescending(f => f.Written).Select(f => (f.Folder, f.Identity))];
    }

    private static int StepOf(string folder) => TrainingCheckpoint.TryReadState(folder)?.Step ?? 0;
}
