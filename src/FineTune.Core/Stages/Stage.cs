using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// One step of a pipeline. A stage reads its typed settings, the output folders of the stages it depends on and
/// any external files it declares, and writes files into <see cref="StageContext.OutputDirectory"/>. The runner
/// decides whether it must run (by its key), gives it a fresh temporary folder, and commits that folder into the
/// content store only when <see cref="RunAsync"/> returns normally.
/// </summary>
public abstract class Stage
{
    /// <summary>The key under <c>stages:</c> in the pipeline file.</summary>
    public abstract string Name { get; }

    /// <summary>Bump when the stage's code changes what it writes, so cached outputs are not reused.</summary>
    public abstract int ImplementationVersion { get; }

    /// <summary>Stages whose output folders this stage reads.</summary>
    public abstract IReadOnlyList<string> DependsOn { get; }

    /// <summary>True when the result depends on the compute environment (device, dtype, libtorch version).</summary>
    public virtual bool DependsOnComputeEnvironment => false;

    /// <summary>The stage's settings object inside the pipeline (its values feed the key and the lock file).</summary>
    public abstract object SelectSettings(PipelineDefinition pipeline);

    /// <summary>
    /// The content hashes of what the stage reads from outside the store (a data file, a tokenizer folder), without
    /// running the stage. Paths and timestamps never enter the key; only these hashes do.
    /// </summary>
    public virtual IReadOnlyList<ExternalInput> ResolveExternalInputs(StageContext context) => [];

    public abstract Task RunAsync(StageContext context, CancellationToken cancellationToken);
}

/// <summary>Something a stage reads from outside the store, named for humans and identified by content.</summary>
public sealed record ExternalInput(string Name, string Sha256, long Size);

/// <summary>Where a stage's messages go. Results are printed by the runner; stages report progress and notes.</summary>
public interface IStageLog
{
    void Info(string message);
    void Warning(string message);

    /// <summary>Progress of long work. The sink draws a bar on a terminal and prints periodic lines otherwise.</summary>
    void Progress(StageProgress progress);
}

/// <param name="Done">Units done so far.</param>
/// <param name="Total">Units in all (0 when unknown).</param>
/// <param name="Unit">"step", "byte", "example" ...</param>
/// <param name="Detail">Figures shown after the bar: "loss 2.31 lr 1.0e-04 2,340 tok/s".</param>
public sealed record StageProgress(long Done, long Total, string Unit, string? Detail = null);

public sealed class StageContext
{
    public required PipelineDefinition Pipeline { get; init; }

    /// <summary>The folder holding the pipeline file; relative paths in settings resolve against it.</summary>
    public required string PipelineDirectory { get; init; }

    /// <summary>An empty folder to write into. It becomes the cached output only if the stage succeeds.</summary>
    public required string OutputDirectory { get; init; }

    /// <summary>Output folders of the stages in <see cref="Stage.DependsOn"/>, by stage name (read-only).</summary>
    public required IReadOnlyDictionary<string, string> InputDirectories { get; init; }

    /// <summary>
    /// A scratch folder private to this stage key that survives a crash or Ctrl+C (checkpoints live here, so a
    /// re-run with the same key can resume). The runner deletes it once the output is committed.
    /// </summary>
    public required string WorkDirectory { get; init; }

    public required IStageLog Log { get; init; }

    /// <summary>What to do with a checkpoint that an interrupted run with other settings left (run --restart, --resume-with-changes).</summary>
    public CheckpointPolicy Checkpoints { get; init; } = CheckpointPolicy.Resume;

    public required ComputeEnvironment Environment { get; init; }

    /// <summary>Figures the stage wants in the lock file and the run summary (examples, tokens, final loss...).</summary>
    public IDictionary<string, object> Summary { get; } = new SortedDictionary<string, object>(StringComparer.Ordinal);

    public T Settings<T>() => (T)Pipeline.SettingsOf(Name);

    /// <summary>Set by the runner to the stage being run.</summary>
    public required string Name { get; init; }

    public string ResolvePath(string relative) => Path.GetFullPath(Path.Combine(PipelineDirectory, relative));

    public string Input(string stage) => InputDirectories.TryGetValue(stage, out var dir)
        ? dir
        : throw new InvalidOperationException($"stage '{Name}' did not declare a dependency on '{stage}'");
}

/// <summary>
/// What in the environment changes a torch stage's result. Filled in by the torch layer; the runner puts it in the
/// keys of stages that set <see cref="Stage.DependsOnComputeEnvironment"/> and in the lock file.
/// </summary>
public sealed record ComputeEnvironment(string Device, string LibTorchVersion, int Threads)
{
    public static readonly ComputeEnvironment None = new("none", "none", 0);
}

/// <summary>
/// How a stage treats a checkpoint of an interrupted run. Resume: continue a run with the same settings, refuse (with
/// the list of changes) when they differ. Restart: discard such checkpoints. ResumeWithChanges: continue despite
/// changes the stage deems safe (a train stage: the schedule and bookkeeping, never the model or the data).
/// </summary>
public enum CheckpointPolicy { Resume, Restart, ResumeWithChanges }
