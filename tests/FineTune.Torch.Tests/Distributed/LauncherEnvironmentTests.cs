using FineTune.Core.Diagnostics;
using FineTune.Torch.Distributed;

namespace FineTune.Torch.Tests.Distributed;

/// <summary>The variables each launcher documents: Open MPI's mpirun(1), Slurm's srun(1) "OUTPUT ENVIRONMENT
/// VARIABLES", torchrun's "Environment variables" of torch.distributed.elastic.</summary>
public class LauncherEnvironmentTests
{
    private static LauncherEnvironment From(params (string Name, string Value)[] variables) =>
        LauncherEnvironment.From(variables.ToDictionary(v => v.Name, v => v.Value));

    [Fact]
    public void No_launcher_is_one_process()
    {
        var single = From(("PATH", "/usr/bin"));
        Assert.Equal(LauncherEnvironment.Single, single);
        Assert.False(single.IsMultiProcess);
    }

    [Fact]
    public void Mpirun()
    {
        var e = From(("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"));
        Assert.Equal(new LauncherEnvironment("mpirun", 1, 4, 1), e);
        Assert.True(e.IsMultiProcess);
    }

    [Fact]
    public void Srun_but_not_a_batch_script()
    {
        var step = From(("SLURM_PROCID", "3"), ("SLURM_STEP_NUM_TASKS", "8"), ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS", "8"));
        Assert.Equal(new LauncherEnvironment("srun", 3, 8, 1), step);
        // sbatch's script itself: SLURM_PROCID=0 and SLURM_NTASKS of the allocation, but no step.
        Assert.Equal(LauncherEnvironment.Single, From(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")));
    }

    [Fact]
    public void Torchrun_with_its_rendezvous()
    {
        var e = From(("RANK", "5"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"));
        Assert.Equal(new LauncherEnvironment("torchrun", 5, 8, 1, "node0", 29500), e);
    }

    [Fact]
    public void Mpirun_inside_a_slurm_allocation_is_mpirun()
    {
        var e = From(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2"), ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"));
        Assert.Equal("mpirun", e.Launcher);
        Assert.Equal(2, e.WorldSize);
    }

    [Theory]
    [InlineData("2", "2")]
    [InlineData("x", "2")]
    [InlineData("0", "0")]
    public void Malformed_variables_are_FT1101(string rank, string size)
    {
        var error = Assert.Throws<FineTuneException>(() => From(("RANK", rank), ("WORLD_SIZE", size)));
        Assert.Contains(DiagnosticCodes.LauncherMismatch, error.Message);
    }

    [Fact]
    public void Each_rank_takes_its_slice_of_a_global_batch()
    {
        int[] global = [10, 11, 12, 13, 14];
        // rows [rank x 3, rank x 3 + 3): the short last global batch leaves rank 1 two rows.
        Assert.Equal([10, 11, 12], Share(global, rank: 0, world: 2, rowsPerRank: 3));
        Assert.Equal([13, 14], Share(global, rank: 1, world: 2, rowsPerRank: 3));
        Assert.Empty(Share([10], rank: 1, world: 2, rowsPerRank: 1));
    }

    private static int[] Share(int[] rows, int rank, int world, int rowsPerRank)
    {
        using var parallel = new DataParallel(new FakeCollectives(rank, world));
        return parallel.ShareOf(rows, rowsPerRank);
    }

    [Fact]
    public void A_missing_libmpi_names_the_package()
    {
        var error = Assert.Throws<FineTuneException>(() => MpiCollectives.Load("libmpi-not-installed.so.40"));
        Assert.Contains(DiagnosticCodes.DistributedLibraryMissing, error.Message);
        Assert.Contains("openmpi-bin libopenmpi-dev", error.Message);
    }

    [Fact]
    public void A_missing_libnccl_names_the_package()
    {
        if (System.Runtime.InteropServices.NativeLibrary.TryLoad(NcclCollectives.Library, out _)) return;
        var error = Assert.Throws<FineTuneException>(() =>
            NcclCollectives.Start(new LauncherEnvironment("torchrun", 0, 2, 0), TorchSharp.torch.CPU,
                TimeSpan.FromSeconds(1)));
        Assert.Contains(DiagnosticCodes.DistributedLibraryMissing, error.Message);
        Assert.Contains("nccl", error.Message);
    }

    private sealed class FakeCollectives(int rank, int world) : ICollectives
    {
        public int Rank => rank;
        public int WorldSize => world;
        public string Backend => "fake";
        public TorchSharp.torch.Device BufferDevice => TorchSharp.torch.CPU;
        public void AllReduceSum(nint buffer, long count, string what) { }
        public void Broadcast(nint buffer, long count, int root, string what) { }
        public void Barrier(string what) { }
        public void Dispose() { }
    }
}
