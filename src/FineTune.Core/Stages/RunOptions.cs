namespace FineTune.Core.Stages;

/// <summary>What a run selects and how: the command line's run and status options.</summary>
internal sealed class RunOptions
{
    /// <summary>Re-run every selected stage even when its output is cached.</summary>
    public bool ForceAll { get; init; }

    /// <summary>Re-run this stage even when its output is cached.</summary>
    public string? ForceStage { get; init; }

    /// <summary>Stop after this stage.</summary>
    public string? Until { get; init; }

    /// <summary>Run only this stage; the stages before it must be up to date.</summary>
    public string? Only { get; init; }

    /// <summary>Say what would run without running anything (the status command).</summary>
    public bool DryRun { get; init; }

    /// <summary>Hash every output file of a reused stage again (run --verify), not only compare sizes.</summary>
    public bool Verify { get; init; }

    /// <summary>Wait for another run that holds the store, rather than failing at once.</summary>
    public bool WaitForLock { get; init; } = true;

    /// <summary>What stages do with checkpoints of interrupted runs whose settings differ.</summary>
    public CheckpointPolicy Checkpoints { get; init; } = CheckpointPolicy.Resume;

    /// <summary>
    /// This process is a rank other than 0 of a multi-process launch (mpirun, srun, torchrun): rank 0 runs the
    /// pipeline and alone writes the store and the lock file; this process waits for rank 0's outputs and runs only
    /// the stages that run on every rank (<see cref="Stage.RunsOnEveryRank"/>), writing nothing.
    /// </summary>
    public bool Follower { get; init; }
}
