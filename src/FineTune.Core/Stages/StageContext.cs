using FineTune.Core.Caching;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>What the runner hands a stage: its typed settings, its folders, its upstream outputs and its log.</summary>
internal sealed class StageContext
{
    /// <summary>The pipeline, for locating settings in diagnostics and naming the run; a stage's settings are <see
    /// cref="Settings"/>.</summary>
    public required PipelineDefinition Pipeline { get; init; }

    /// <summary>The stage's own settings section (the runner hands over <see cref="Stage.SettingsIn"/>).</summary>
    public required object Settings { get; init; }

    /// <summary>The folder holding the pipeline file; relative paths in settings resolve against it.</summary>
    public required string PipelineDirectory { get; init; }

    /// <summary>An empty folder to write into. It becomes the cached output only if the stage succeeds.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Output folders of the stages in <see cref="Stage.DependsOn"/>, by stage name (read-only).</summary>
    public required IReadOnlyDictionary<string, string> InputDirectories { get; init; }

    /// <summary>The store entries of those outputs (their summaries and environments), by stage name.</summary>
    public IReadOnlyDictionary<string, StoreEntry> InputEntries { get; init; } = new Dictionary<string, StoreEntry>();

    /// <summary>
    /// A scratch folder private to this stage key that survives a crash or Ctrl+C (checkpoints live here, so a
    /// re-run with the same key can resume). The runner deletes it once the output is committed.
    /// </summary>
    public required string WorkDirectory { get; init; }

    public required IStageLog Log { get; init; }

    /// <summary>What to do with a checkpoint that an interrupted run with other settings left (run --restart,
    /// --resume-with-changes).</summary>
    public CheckpointPolicy Checkpoints { get; init; } = CheckpointPolicy.Resume;

    /// <summary>What <see cref="Stage.ResolveEnvironment"/> resolved (None for stages that do not depend on
    /// one).</summary>
    public required ComputeEnvironment Environment { get; init; }

    /// <summary>Figures the stage wants in the lock file and the run summary (examples, tokens, final
    /// loss...).</summary>
    public IDictionary<string, object> Summary { get; } = new SortedDictionary<string, object>(StringComparer.Ordinal);

    /// <summary>
    /// Figures that vary between identical runs (durations, throughput, MFU, time estimates): shown and kept in the
    /// run record beside the store, never in the lock file or a hashed output.
    /// </summary>
    public IDictionary<string, object> Timings { get; } =
        new SortedDictionary<string, object>(StringComparer.Ordinal);

    /// <summary>A file for the stage's own timing log (JSON lines) beside the run record; null when none.</summary>
    public string? TimingsLogPath { get; init; }

    /// <summary>The run's Ctrl+C, for work outside <see cref="Stage.RunAsync"/> that may wait on the network (asking
    /// the Hub for a model's ETags to compute a key).</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Set by the runner to the stage being run.</summary>
    public required string Name { get; init; }

    public string ResolvePath(string relative) => Path.GetFullPath(Path.Combine(PipelineDirectory, relative));

    public string Input(string stage) => InputDirectories.TryGetValue(stage, out var dir)
        ? dir
        : throw new InvalidOperationException($"stage '{Name}' did not declare a dependency on '{stage}'");
}
