namespace FineTune.Core.Stages;

/// <summary>What became of a stage in a run.</summary>
public enum StageStatus { UpToDate, Restored, Ran, WillRun, NotSelected }
