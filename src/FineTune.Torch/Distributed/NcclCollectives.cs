using System.Diagnostics;
using System.Runtime.InteropServices;
using FineTune.Core.Diagnostics;
using static TorchSharp.torch;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Collectives over NCCL for CUDA tensors, by P/Invoke to <c>libnccl.so.2</c> (NCCL has no maintained .NET binding).
/// NCCL's unique id goes from rank 0 to the others out of band: over TCP on <c>MASTER_PORT + 1</c> where the
/// launcher sets <c>MASTER_ADDR</c>/<c>MASTER_PORT</c> (torchrun's agent may hold <c>MASTER_PORT</c> itself), else
/// over MPI (mpirun, srun). Operations are queued on CUDA's default stream, the one libtorch computes on, and then
/// polled with <c>cudaStreamQuery</c> against the deadline; a rank that does not answer aborts the communicator,
/// so a dead rank is an error rather than a hang.
/// </summary>
internal sealed unsafe class NcclCollectives : ICollectives
{
    public const string Library = "libnccl.so.2";
    // The CUDA runtime of a pip PyTorch (nvidia-cuda-runtime-cu12/13) or of a CUDA toolkit.
    private static readonly string[] CudaRuntimes =
        ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"];
    private const int UniqueIdBytes = 128;
    private const int NcclFloat32 = 7, NcclUint8 = 1, NcclSum = 0;
    private const int CudaErrorNotReady = 600;
    private static readonly nint DefaultStream = 0;

    private readonly nint _comm;
    private readonly CudaRuntime _cuda;
    private readonly TimeSpan _timeout;
    private readonly MpiCollectives? _mpi;
    private bool _broken, _destroyed;

    public int Rank { get; }
    public int WorldSize { get; }
    public string Backend => "nccl";
    public Device BufferDevice { get; }

    private NcclCollectives(nint comm, CudaRuntime cuda, Device device, LauncherEnvironment launcher,
        TimeSpan timeout, MpiCollectives? mpi)
    {
        _comm = comm;
        _cuda = cuda;
        BufferDevice = device;
        Rank = launcher.Rank;
        WorldSize = launcher.WorldSize;
        _timeout = timeout;
        _mpi = mpi;
    }

    /// <summary>Loads NCCL and the CUDA runtime, selects this rank's GPU, and joins the launch's communicator.
    /// </summary>
    public static NcclCollectives Start(LauncherEnvironment launcher, Device device, TimeSpan timeout)
    {
        if (!NativeLibrary.TryLoad(Library, out _))
            throw new FineTuneException(DiagnosticCodes.DistributedLibraryMissing,
                $"cannot load NCCL ({Library}) for distributed training on CUDA: install it (pip install " +
                "nvidia-nccl-cu12 and add its lib folder to LD_LIBRARY_PATH, or apt-get install libnccl2), train on " +
                "the CPU, or set train.distributed: off", ExitCodes.StageFailed);
        var cuda = CudaRuntime.Load();
        var gpu = device.index >= 0 ? device.index : launcher.LocalRank;
        cuda.Check(cuda.SetDevice(gpu), $"cudaSetDevice({gpu})");

        var exchange = ExchangeFor(launcher);
        var mpi = exchange == IdExchange.Mpi ? MpiCollectives.Start(timeout) : null;
        var id = new byte[UniqueIdBytes];
        if (launcher.Rank == 0)
            fixed (byte* pointer = id) Check(ncclGetUniqueId(pointer), "ncclGetUniqueId");
        if (mpi is not null) mpi.Broadcast(id, 0, "the NCCL id exchange");
        else
            id = TcpRendezvous.Share(launcher.Rank == 0 ? id : null, launcher.Rank, launcher.WorldSize,
                launcher.MasterAddress!, launcher.MasterPort!.Value + 1, timeout);
        if (id.Length != UniqueIdBytes)
            throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                $"the NCCL id from rank 0 has {id.Length} bytes instead of {UniqueIdBytes}", ExitCodes.StageFailed);

        // ncclCommInitRank blocks until every rank has joined: wait for it on another thread, within the timeout.
        var init = Task.Run(() =>
        {
            var unique = new UniqueId();
            for (var i = 0; i < UniqueIdBytes; i++) unique.Internal[i] = id[i];
            Check(ncclCommInitRank(out var comm, launcher.WorldSize, unique, launcher.Rank), "ncclCommInitRank");
            return comm;
        });
        if (!init.Wait(timeout))
            throw new FineTuneException(DiagnosticCodes.CollectiveTimedOut,
                $"rank {launcher.Rank} of {launcher.WorldSize}: NCCL's communicator did not form within " +
                $"{timeout.TotalSeconds:0.#} s (a rank died or cannot reach the others). FINETUNE_COLLECTIVE_TIMEOUT " +
                "(seconds) sets the limit", ExitCodes.StageFailed);
        return new NcclCollectives(init.Result, cuda, new Device(TorchSharp.DeviceType.CUDA, gpu), launcher, timeout, mpi);
    }

    public void AllReduceSum(nint buffer, long count, string what)
    {
        Check(ncclAllReduce(buffer, buffer, (nuint)count, NcclFloat32, NcclSum, _comm, DefaultStream),
            "ncclAllReduce");
        Wait(what);
    }

    public void Broadcast(nint buffer, long count, int root, string what)
    {
        Check(ncclBroadcast(buffer, buffer, (nuint)count, NcclUint8, root, _comm, DefaultStream), "ncclBroadcast");
        Wait(what);
    }

    /// <summary>NCCL has no barrier: an all-reduce of one value is one.</summary>
    public void Barrier(string what)
    {
        using var one = ones(1, ScalarType.Float32, BufferDevice);
        AllReduceSum(Collectives.DataPointer<float>(one), 1, what);
    }

    private void Wait(string what)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var state = _cuda.StreamQuery(DefaultStream);
            if (state == 0) return;
            if (state != CudaErrorNotReady) _cuda.Check(state, "cudaStreamQuery");
            Check(ncclCommGetAsyncError(_comm, out var asyncError), "ncclCommGetAsyncError");
            if (asyncError != 0) Fail(asyncError, what);
            if (clock.Elapsed > _timeout)
            {
                _broken = true;
                _ = ncclCommAbort(_comm);
                throw new FineTuneException(DiagnosticCodes.CollectiveTimedOut,
                    $"rank {Rank} of {WorldSize}: {what} got no answer from every rank within " +
                    $"{_timeout.TotalSeconds:0.#} s; a rank died, was stopped or hangs (see the launcher's output). " +
                    "FINETUNE_COLLECTIVE_TIMEOUT (seconds) sets the limit", ExitCodes.StageFailed);
            }
            Thread.Sleep(clock.Elapsed < TimeSpan.FromSeconds(1) ? 0 : 1);
        }
    }

    private void Fail(int error, string what)
    {
        _broken = true;
        _ = ncclCommAbort(_comm);
        Check(error, what);
    }

    /// <summary>Destroys the communicator after a clean run; after a failure it was aborted already.</summary>
    public void Dispose()
    {
        if (_destroyed) return;
        _destroyed = true;
        if (!_broken) _ = ncclCommDestroy(_comm);
        _mpi?.Dispose();
    }

    private static void Check(int result, string call)
    {
        if (result == 0) return;
        var message = Marshal.PtrToStringUTF8(ncclGetErrorString(result)) ?? "unknown";
        throw new FineTuneException(DiagnosticCodes.CollectiveFailed, $"{call} failed: NCCL error {result} " +
            $"({message}); NCCL_DEBUG=INFO prints NCCL's own account", ExitCodes.StageFailed);
    }

    /// <summary>How NCCL's unique id reaches the ranks.</summary>
    internal enum IdExchange { Tcp, Mpi }

    /// <summary>TCP where the launcher names rank 0's host and port (torchrun; or set by hand), else MPI, which
    /// mpirun and srun (with PMIx) start.</summary>
    internal static IdExchange ExchangeFor(LauncherEnvironment launcher) => launcher switch
    {
        { MasterAddress: { Length: > 0 }, MasterPort: not null } => IdExchange.Tcp,
        { Launcher: "mpirun" or "srun" } => IdExchange.Mpi,
        _ => throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
            $"{launcher.Launcher} started rank {launcher.Rank} of {launcher.WorldSize} without MASTER_ADDR and " +
            "MASTER_PORT: the nccl backend needs them to hand NCCL's id from rank 0 to the others",
            ExitCodes.InvalidInput),
    };

    [StructLayout(LayoutKind.Sequential)]
    private struct UniqueId
    {
        public fixed byte Internal[UniqueIdBytes];
    }

    /// <summary>The few CUDA runtime calls needed, from whichever libcudart the installed PyTorch brings.</summary>
    private sealed class CudaRuntime
    {
        private readonly delegate* unmanaged<int, int> _setDevice;
        private readonly delegate* unmanaged<nint, int> _streamQuery;
        private readonly delegate* unmanaged<int, nint> _errorString;

        private CudaRuntime(nint library)
        {
            _setDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(library, "cudaSetDevice");
            _streamQuery = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(library, "cudaStreamQuery");
            _errorString = (delegate* unmanaged<int, nint>)NativeLibrary.GetExport(library, "cudaGetErrorString");
        }

        public static CudaRuntime Load()
        {
            foreach (var name in CudaRuntimes)
                if (NativeLibrary.TryLoad(name, out var library)) return new CudaRuntime(library);
            throw new FineTuneException(DiagnosticCodes.DistributedLibraryMissing,
                $"cannot load the CUDA runtime ({string.Join(", ", CudaRuntimes)}) for the nccl backend: install " +
                "it (pip install nvidia-cuda-runtime-cu12, which PyTorch brings) and add its lib folder to " +
                "LD_LIBRARY_PATH", ExitCodes.StageFailed);
        }

        public int SetDevice(int device) => _setDevice(device);
        public int StreamQuery(nint stream) => _streamQuery(stream);

        public void Check(int error, string call)
        {
            if (error != 0)
                throw new FineTuneException(DiagnosticCodes.CollectiveFailed,
                    $"{call} failed: CUDA error {error} ({Marshal.PtrToStringUTF8(_errorString(error))})",
                    ExitCodes.StageFailed);
        }
    }

    [DllImport(Library)] private static extern int ncclGetUniqueId(byte* uniqueId);
    [DllImport(Library)] private static extern int ncclCommInitRank(out nint comm, int ranks, UniqueId id, int rank);
    [DllImport(Library)]
    private static extern int ncclAllReduce(nint send, nint receive, nuint count, int type, int op, nint comm,
        nint stream);
    [DllImport(Library)]
    private static extern int ncclBroadcast(nint send, nint receive, nuint count, int type, int root, nint comm,
        nint stream);
    [DllImport(Library)] private static extern int ncclCommGetAsyncError(nint comm, out int error);
    [DllImport(Library)] private static extern int ncclCommAbort(nint comm);
    [DllImport(Library)] private static extern int ncclCommDestroy(nint comm);
    [DllImport(Library)] private static extern nint ncclGetErrorString(int result);
}
