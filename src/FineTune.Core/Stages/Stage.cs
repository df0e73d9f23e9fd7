using FineTune.Core.Caching;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// One step of a pipeline, as the runner sees it. Stages derive from <see cref="Stage{TSettings}"/>, which declares
/// the settings type once and hands the stage its typed settings; this untyped face is what the runner iterates.
/// The runner decides whether a stage must run (by its key), gives it a fresh temporary folder, and commits that
/// folder into the content store only when <see cref="RunAsync"/> returns normally.
/// </summary>
internal abstract class Stage
{
    /// <summary>The key under <c>stages:</c> in the pipeline file; the runner finds the stage's settings by
    /// it.</summary>
    public abstract string Name { get; }

    /// <summary>Bump when the stage's code changes what it writes, so cached outputs are not reused.</summary>
    public abstract int ImplementationVersion { get; }

    /// <summary>Stages whose output folders this stage reads.</summary>
    public abstract IReadOnlyList<string> DependsOn { get; }

    /// <summary>The type of the section under <c>stages.&lt;name&gt;</c>.</summary>
    public abstract Type SettingsType { get; }

    /// <summary>This stage's settings in <paramref name="pipeline"/>: the section of <c>stages:</c> named like the
    /// stage.</summary>
    public object SettingsIn(PipelineDefinition pipeline)
    {
        var section = pipeline.Stages.Section(Name)
            ?? throw new InvalidOperationException($"the pipeline has no settings section 'stages.{Name}' for " +
                $"stage '{Name}'");
        return SettingsType.IsInstanceOfType(section)
            ? section
            : throw new InvalidOperationException($"stages.{Name} holds {section.GetType().Name}, but stage '{Name}' " +
                $"declares {SettingsType.Name}");
    }

    /// <summary>
    /// The device (and libtorch) the result depends on, or <see cref="ComputeEnvironment.None"/>. A stage that names
    /// one
    /// gets it in its key, in <see cref="StageContext.Environment"/> and in the lock file.
    /// </summary>
    public abstract ComputeEnvironment ResolveEnvironment(StageContext context);

    /// <summary>
    /// What the stage reads from outside the store (a data file, a tokenizer or model folder, a Hub snapshot), by
    /// content, without running it. Paths and timestamps never enter the key; only the hashes do.
    /// </summary>
    public abstract IReadOnlyList<StageInput> ReadInputs(StageContext context);

    public abstract Task RunAsync(StageContext context, CancellationToken cancellationToken);

    /// <summary>
    /// Whether every process of a multi-process launch runs this stage with <paramref name="settings"/> (data-parallel
    /// training), not rank 0 alone; see <see cref="RunOptions.Follower"/>.
    /// </summary>
    public virtual bool RunsOnEveryRank(object settings) => false;
}

/// <summary>A stage whose settings are a <typeparamref name="TSettings"/> section of the pipeline file.</summary>
internal abstract class Stage<TSettings> : Stage where TSettings : class
{
    public sealed override Type SettingsType => typeof(TSettings);

    public sealed override ComputeEnvironment ResolveEnvironment(StageContext context)
        => ResolveEnvironment(context, SettingsOf(context));

    public sealed override IReadOnlyList<StageInput> ReadInputs(StageContext context)
        => ReadInputs(context, SettingsOf(context));

    public sealed override Task RunAsync(StageContext context, CancellationToken cancellationToken) =>
        RunAsync(context, SettingsOf(context), cancellationToken);

    protected virtual ComputeEnvironment ResolveEnvironment(StageContext context, TSettings settings)
        => ComputeEnvironment.None;

    protected virtual IReadOnlyList<StageInput> ReadInputs(StageContext context, TSettings settings) => [];

    protected abstract Task RunAsync(StageContext context, TSettings settings, CancellationToken cancellationToken);

    private TSettings SettingsOf(StageContext context) => context.Settings as TSettings
        ?? throw new InvalidOperationException($"stage '{Name}' was handed {context.Settings.GetType().Name} " +
            $"settings, not {typeof(TSettings).Name}");
}
