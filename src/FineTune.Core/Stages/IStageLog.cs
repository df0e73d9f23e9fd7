namespace FineTune.Core.Stages;

/// <summary>Where a stage's messages go. Results are printed by the runner; stages report progress and notes.</summary>
internal interface IStageLog
{
    void Info(string message);
    void Warning(string message);

    /// <summary>Progress of long work. The sink draws a bar on a terminal and prints periodic lines
    /// otherwise.</summary>
    void Progress(StageProgress progress);
}
