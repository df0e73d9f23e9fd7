namespace FineTune.Core.Stages;

/// <summary>
/// What in the environment changes a torch stage's result. A stage resolves it (<see
/// cref="Stage.ResolveEnvironment"/>);
/// the runner puts device and libtorch in the stage's key, and all three in the lock file.
/// </summary>
internal sealed record ComputeEnvironment(string Device, string LibTorchVersion, int Threads)
{
    public static readonly ComputeEnvironment None = new("none", "none", 0);

    /// <summary>The names under which the key and the lock file's <c>environment:</c> hold the figures.</summary>
    public const string DeviceKey = "device", LibTorchKey = "libtorch", ThreadsKey = "threads";

    public bool IsNone => this == None;
}
