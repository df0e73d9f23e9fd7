using System.Diagnostics;
using System.Runtime.InteropServices;
using FineTune.Core.Diagnostics;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Collectives over Open MPI, called through P/Invoke (MPI.NET on NuGet is Windows-only). Open MPI's handles are the
/// addresses of exported objects (<c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>), read with
/// <see cref="NativeLibrary.GetExport"/>. Every operation is the non-blocking variant polled with <c>MPI_Test</c>
/// against a deadline: a blocking call would wait forever for a rank that died or was stopped.
/// </summary>
internal sealed class MpiCollectives : ICollectives
{
    private const string Library = "libmpi.so.40";
    private const int ThreadSerialized = 2;
    // Open MPI's MPI_IN_PLACE is ((void *) 1).
    private static readonly nint InPlace = 1;
    // One call moves at most this many elements (MPI counts are ints).
    private const int MaxCount = 1 << 30;
    private static readonly TimeSpan HotPolling = TimeSpan.FromSeconds(5);

    private static readonly Lock Gate = new();
    private static bool _initialized;

    private readonly nint _world, _float, _byte, _sum;
    private readonly TimeSpan _timeout;
    private bool _finalized;

    public int Rank { get; }
    public int WorldSize { get; }
    public string Backend => "mpi";
    public TorchSharp.torch.Device BufferDevice => TorchSharp.torch.CPU;

    private MpiCollectives(nint library, TimeSpan timeout)
    {
        _timeout = timeout;
        _world = NativeLibrary.GetExport(library, "ompi_mpi_comm_world");
        _float = NativeLibrary.GetExport(library, "ompi_mpi_float");
        _byte = NativeLibrary.GetExport(library, "ompi_mpi_byte");
        _sum = NativeLibrary.GetExport(library, "ompi_mpi_op_sum");
        Check(MPI_Comm_rank(_world, out var rank), "MPI_Comm_rank");
        Check(MPI_Comm_size(_world, out var size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
    }

    /// <summary>
    /// Initialises MPI (once per process: MPI cannot start again after it finished) and joins the launch's world.
    /// </summary>
    public static MpiCollectives Start(TimeSpan timeout)
    {
        var library = Load(Library);
        lock (Gate)
        {
            if (_initialized)
                throw new InvalidOperationException("MPI was already started in this process; it cannot start twice");
            Check(MPI_Initialized(out var already), "MPI_Initialized");
            // Any thread may call, one at a time: the trainer runs on whichever thread the runner continues on.
            if (already == 0) Check(MPI_Init_thread(0, 0, ThreadSerialized, out _), "MPI_Init_thread");
            _initialized = true;
        }
        return new MpiCollectives(library, timeout);
    }

    /// <summary>
    /// libmpi, loaded with RTLD_GLOBAL: Open MPI's plug-ins (loaded later by libmpi itself) resolve libmpi's symbols
    /// globally, which a default (local) load would hide from them.
    /// </summary>
    internal static nint Load(string name)
    {
        const int lazyGlobal = 0x001 | 0x100;
        var handle = dlopen(name, lazyGlobal);
        if (handle == 0 || !NativeLibrary.TryLoad(name, out var library))
            throw new FineTuneException(DiagnosticCodes.DistributedLibraryMissing,
                $"cannot load Open MPI ({name}) for distributed training: install it (Debian/Ubuntu: " +
                "apt-get install openmpi-bin libopenmpi-dev) or set train.distributed: off",
                ExitCodes.StageFailed);
        return library;
    }

    public void AllReduceSum(nint buffer, long count, string what)
    {
        for (long done = 0; done < count; done += MaxCount)
        {
            var n = (int)Math.Min(MaxCount, count - done);
            Check(MPI_Iallreduce(InPlace, buffer + (nint)(done * sizeof(float)), n, _float, _sum, _world,
                out var request), "MPI_Iallreduce");
            Wait(request, what);
        }
    }

    public void Broadcast(nint buffer, long count, int root, string what)
    {
        for (long done = 0; done < count; done += MaxCount)
        {
            var n = (int)Math.Min(MaxCount, count - done);
            Check(MPI_Ibcast(buffer + (nint)done, n, _byte, root, _world, out var request), "MPI_Ibcast");
            Wait(request, what);
        }
    }

    public void Barrier(string what)
    {
        Check(MPI_Ibarrier(_world, out var request), "MPI_Ibarrier");
        Wait(request, what);
    }

    private void Wait(nint request, string what)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Check(MPI_Test(ref request, out var done, 0), "MPI_Test");
            if (done != 0) return;
            if (clock.Elapsed > _timeout)
                throw new FineTuneException(DiagnosticCodes.CollectiveTimedOut,
                    $"rank {Rank} of {WorldSize}: {what} got no answer from every rank within " +
                    $"{_timeout.TotalSeconds:0.#} s; a rank died, was stopped or hangs (see the launcher's output). " +
                    "FINETUNE_COLLECTIVE_TIMEOUT (seconds) sets the limit",
                    ExitCodes.StageFailed);
            // Open MPI's non-blocking collectives only progress inside MPI_Test, one round per call: poll hot
            // (yielding the core) while an answer is plausible, then gently, so a long wait costs no CPU.
            if (clock.Elapsed < HotPolling) Thread.Yield();
            else Thread.Sleep(1);
        }
    }

    /// <summary>Finishes MPI; after a failure it is left alone (finishing would wait for the ranks that are gone).
    /// </summary>
    public void Dispose()
    {
        if (_finalized) return;
        _finalized = true;
        MPI_Finalize();
    }

    private static void Check(int error, string call)
    {
        if (error != 0)
            throw new FineTuneException(DiagnosticCodes.CollectiveFailed, $"{call} failed with MPI error {error}",
                ExitCodes.StageFailed);
    }

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint dlopen(string file, int mode);

    [DllImport(Library)] private static extern int MPI_Initialized(out int flag);
    [DllImport(Library)]
    private static extern int MPI_Init_thread(nint argc, nint argv, int required, out int provided);
    [DllImport(Library)] private static extern int MPI_Finalize();
    [DllImport(Library)] private static extern int MPI_Comm_rank(nint comm, out int rank);
    [DllImport(Library)] private static extern int MPI_Comm_size(nint comm, out int size);
    [DllImport(Library)]
    private static extern int MPI_Iallreduce(nint send, nint receive, int count, nint type, nint op, nint comm,
        out nint request);
    [DllImport(Library)]
    private static extern int MPI_Ibcast(nint buffer, int count, nint type, int root, nint comm, out nint request);
    [DllImport(Library)] private static extern int MPI_Ibarrier(nint comm, out nint request);
    [DllImport(Library)] private static extern int MPI_Test(ref nint request, out int flag, nint status);
}
