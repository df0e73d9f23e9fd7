namespace FineTune.Core.Stages;

/// <summary>What became of a stage in a run.</summary>
internal enum StageStatus { UpToDate, Restored, Ran, WillRun, NotSelected }
