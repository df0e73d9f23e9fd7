namespace FineTune.Core.Stages;

/// <summary>
/// What in the environment changes a torch stage's result. A stage resolves it (<see
/// cref="Stage.ResolveEnvironment"/>);
/// the runner puts device and libtorch in the stage's key, and all three in the lock file. The thread count is asked
/// for only when a stage's result is recorded, so that deciding a stage is up to date needs no native library loaded.
/// </summary>
internal sealed record ComputeEnvironment(string Device, string LibTorchVersion, Func<int> CountThreads)
{
    public ComputeEnvironment(string device, string libTorchVersion, int threads)
        : this(device, libTorchVersion, () => threads) { }

    public static readonly ComputeEnvironment None = new("none", "none", 0);

    public int Threads => CountThreads();

    /// <summary>The names under which the key and the lock file's <c>environment:</c> hold the figures.</summary>
    public const string DeviceKey = "device", LibTorchKey = "libtorch", ThreadsKey = "threads";

    public bool IsNone => ReferenceEquals(this, None);
}
