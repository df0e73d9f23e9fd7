using static TorchSharp.torch;

namespace FineTune.Torch.Distributed;

/// <summary>
/// The few collective operations data-parallel training needs, over every rank of one launch. Buffers are addresses
/// of contiguous memory (a tensor's data pointer): host memory for MPI, device memory for NCCL. Every call returns
/// once every rank has taken part, or throws FT1102 when that has not happened within the timeout, so a dead or
/// stopped rank is an error rather than a hang.
/// </summary>
internal interface ICollectives : IDisposable
{
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>The backend's name as users select it (mpi, nccl).</summary>
    string Backend { get; }

    /// <summary>Where buffers must live: the CPU for MPI, this rank's GPU for NCCL.</summary>
    Device BufferDevice { get; }

    /// <summary>Replaces <paramref name="count"/> float32 values at <paramref name="buffer"/> by their sum over the
    /// ranks.</summary>
    void AllReduceSum(nint buffer, long count, string what);

    /// <summary>Replaces <paramref name="count"/> bytes at <paramref name="buffer"/> by rank <paramref name="root"/>'s.
    /// </summary>
    void Broadcast(nint buffer, long count, int root, string what);

    void Barrier(string what);
}

/// <summary>Helpers every backend shares.</summary>
internal static class Collectives
{
    /// <summary>Broadcasts a small managed array from <paramref name="root"/>.</summary>
    public static void Broadcast(this ICollectives collectives, byte[] data, int root, string what)
    {
        using var buffer = tensor(data).to(collectives.BufferDevice);
        collectives.Broadcast(DataPointer<byte>(buffer), data.Length, root, what);
        buffer.cpu().data<byte>().CopyTo(data);
    }

    /// <summary>Sums a small managed array over the ranks.</summary>
    public static void AllReduceSum(this ICollectives collectives, float[] data, string what)
    {
        using var buffer = tensor(data).to(collectives.BufferDevice);
        collectives.AllReduceSum(DataPointer<float>(buffer), data.Length, what);
        buffer.cpu().data<float>().CopyTo(data);
    }

    /// <summary>The address of a contiguous tensor's first element (host or device memory).</summary>
    public static unsafe nint DataPointer<T>(Tensor contiguous) where T : unmanaged =>
        contiguous.storage<T>().data_ptr() + (nint)(contiguous.storage_offset() * sizeof(T));
}
