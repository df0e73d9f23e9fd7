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

internal static class StageLogExtensions
{
    /// <summary>The log as the <see cref="IProgress{T}"/> downloads report to.</summary>
    public static IProgress<StageProgress> AsProgress(this IStageLog log) => new SynchronousProgress(log);

    /// <summary>
    /// Progress&lt;T&gt; posts to the thread pool, so reports could arrive out of order or after the work ended;
    /// this passes each one to the log as it happens, where the log throttles and draws.
    /// </summary>
    private sealed class SynchronousProgress(IStageLog log) : IProgress<StageProgress>
    {
        public void Report(StageProgress value) => log.Progress(value);
    }
}
