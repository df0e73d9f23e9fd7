using FineTune.Core;
using FineTune.Core.Stages;

namespace FineTune.TestKit;

/// <summary>A stage log that keeps everything, in order; <see cref="OnProgress"/> lets a test act at a given step.</summary>
internal sealed class RecordingLog : IStageLog
{
    public List<string> Infos { get; } = [];
    public List<string> Warnings { get; } = [];

    /// <summary>Infos and warnings in the order they came, as "info: ..." and "warning: ...".</summary>
    public List<string> Lines { get; } = [];

    public List<StageProgress> Progresses { get; } = [];
    public Action<StageProgress>? OnProgress { get; set; }

    public void Info(string message)
    {
        lock (Lines) { Infos.Add(message); Lines.Add("info: " + message); }
    }

    public void Warning(string message)
    {
        lock (Lines) { Warnings.Add(message); Lines.Add("warning: " + message); }
    }

    public void Progress(StageProgress progress)
    {
        lock (Progresses) Progresses.Add(progress);
        OnProgress?.Invoke(progress);
    }
}
