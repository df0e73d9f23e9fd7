using FineTune.Core.Stages;
using FineTune.Torch.Stages;
using FineTune.Torch.Training;

namespace FineTune.Cli;

/// <summary>The stages the tool knows, in pipeline order, and how torch stages find their device.</summary>
public sealed class StageCatalog(IReadOnlyList<Stage> stages, Func<string, ComputeEnvironment> resolveEnvironment)
{
    public IReadOnlyList<Stage> Stages { get; } = stages;

    public ComputeEnvironment ResolveEnvironment(string device) => resolveEnvironment(device);

    /// <summary>The runner over these stages, as every command that runs a pipeline uses it.</summary>
    public PipelineRunner CreateRunner() => new(Stages, ResolveEnvironment, CliApplication.ToolVersion);

    public static StageCatalog Create() => new(
        [new FetchStage(), new FormatStage(), new TokenizeStage(), new TrainStage(), new EvaluateStage(), new ExportStage()],
        device => ComputeEnvironmentProvider.Resolve(device));
}
