namespace FineTune.Core.Stages;

/// <summary>
/// How a stage treats a checkpoint of an interrupted run. Resume: continue a run with the same settings, refuse (with
/// the list of changes) when they differ. Restart: discard such checkpoints. ResumeWithChanges: continue despite
/// changes the stage deems safe (a train stage: the schedule and bookkeeping, never the model or the data).
/// </summary>
internal enum CheckpointPolicy { Resume, Restart, ResumeWithChanges }
