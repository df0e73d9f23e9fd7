using FineTune.Core.Stages;

namespace FineTune.Torch.Stages;

/// <summary>
/// The stages of a pipeline, in the order they run: the one list the tool, its tests and the benchmarks use.
/// </summary>
internal static class PipelineStages
{
    public static IReadOnlyList<Stage> Create() =>
        [new FetchStage(), new FormatStage(), new TokenizeStage(), new TrainStage(), new EvaluateStage(),
            new ExportStage()];

    /// <summary>A runner over these stages, recording <paramref name="toolVersion"/> in lock files.</summary>
    public static PipelineRunner CreateRunner(string toolVersion) => new(Create(), toolVersion);
}
