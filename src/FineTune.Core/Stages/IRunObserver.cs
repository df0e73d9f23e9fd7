namespace FineTune.Core.Stages;

/// <summary>Receives what the runner does, to print it (console, JSON, MSBuild).</summary>
internal interface IRunObserver
{
    void Notice(string message);
    void StageUpToDate(StageOutcome outcome);
    void StageStarting(string stage, IReadOnlyList<string> reasons);
    IStageLog LogFor(string stage);
    void StageFinished(StageOutcome outcome);
}
