using System.Runtime.InteropServices;
using FineTune.Core.Diagnostics;
using static TorchSharp.torch;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Collectives over NCCL for CUDA tensors, by P/Invoke to <c>libnccl.so.2</c> (NCCL has no maintained .NET binding).
/// </summary>
internal static class NcclCollectives
{
    public const string Library = "libnccl.so.2";

    public static ICollectives Start(LauncherEnvironment launcher, Device device, TimeSpan timeout)
    {
        _ = launcher;
        _ = device;
        _ = timeout;
        if (!NativeLibrary.TryLoad(Library, out _))
            throw new FineTuneException(DiagnosticCodes.DistributedLibraryMissing,
                $"cannot load NCCL ({Library}) for distributed training on CUDA: install it (pip install " +
                "nvidia-nccl-cu12 and add its lib folder to LD_LIBRARY_PATH, or apt-get install libnccl2), train on " +
                "the CPU, or set train.distributed: off", ExitCodes.StageFailed);
        throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
            "the nccl backend is not available in this build yet; train data-parallel on the CPU (mpi) or set " +
            "train.distributed: off", ExitCodes.StageFailed);
    }
}
