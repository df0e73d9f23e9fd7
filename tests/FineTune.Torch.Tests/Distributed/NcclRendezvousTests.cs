using System.Net;
using System.Net.Sockets;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Distributed;

namespace FineTune.Torch.Tests.Distributed;

/// <summary>
/// How NCCL's unique id reaches the ranks without NCCL itself (no GPU here): the choice of exchange from the launcher's
/// variables, and the TCP exchange between ranks on 127.0.0.1.
/// </summary>
public class NcclRendezvousTests
{
    [Fact]
    public void Master_address_and_port_mean_tcp_else_mpi_under_mpirun_or_srun()
    {
        var torchrun = LauncherEnvironment.From(new Dictionary<string, string>
        {
            ["RANK"] = "1", ["WORLD_SIZE"] = "2", ["MASTER_ADDR"] = "node0", ["MASTER_PORT"] = "29500",
        });
        Assert.Equal(NcclCollectives.IdExchange.Tcp, NcclCollectives.ExchangeFor(torchrun));

        var mpirun = new Dictionary<string, string> { ["OMPI_COMM_WORLD_RANK"] = "0", ["OMPI_COMM_WORLD_SIZE"] = "2" };
        Assert.Equal(NcclCollectives.IdExchange.Mpi, NcclCollectives.ExchangeFor(LauncherEnvironment.From(mpirun)));
        // A job script that exports them makes mpirun's ranks use TCP too.
        mpirun["MASTER_ADDR"] = "node0";
        mpirun["MASTER_PORT"] = "29500";
        var withMaster = LauncherEnvironment.From(mpirun);
        Assert.Equal(("node0", 29500), (withMaster.MasterAddress, withMaster.MasterPort));
        Assert.Equal(NcclCollectives.IdExchange.Tcp, NcclCollectives.ExchangeFor(withMaster));

        var error = Assert.Throws<FineTuneException>(() =>
            NcclCollectives.ExchangeFor(new LauncherEnvironment("torchrun", 0, 2, 0)));
        Assert.Equal(DiagnosticCodes.LauncherMismatch, Assert.Single(error.Diagnostics).Code);
        Assert.Contains("MASTER_ADDR", error.Message);
    }

    [Fact]
    public async Task Every_rank_gets_rank_0s_bytes_whichever_starts_first()
    {
        var port = FreePort();
        var id = Enumerable.Range(0, 128).Select(i => (byte)(i * 7 + 3)).ToArray();
        var timeout = TimeSpan.FromSeconds(20);
        // Ranks 1 and 2 start before rank 0 listens: they must retry, not fail.
        var others = new[] { 1, 2 }.Select(rank => Rank(() =>
            TcpRendezvous.Share(null, rank, 3, "127.0.0.1", port, timeout))).ToList();
        await Task.Delay(300);
        var leader = Rank(() => TcpRendezvous.Share(id, 0, 3, "127.0.0.1", port, timeout));

        Assert.Equal(id, await leader);
        foreach (var other in others) Assert.Equal(id, await other);
    }

    [Fact]
    public void A_rank_whose_rank_0_never_comes_fails_with_FT1102_naming_the_address()
    {
        var port = FreePort();
        var error = Assert.Throws<FineTuneException>(() =>
            TcpRendezvous.Share(null, 1, 2, "127.0.0.1", port, TimeSpan.FromSeconds(1)));
        Assert.Equal(DiagnosticCodes.CollectiveTimedOut, Assert.Single(error.Diagnostics).Code);
        Assert.Contains($"127.0.0.1:{port}", error.Message);
        Assert.Contains("rank 0 never answered", error.Message);
    }

    [Fact]
    public async Task A_process_of_another_world_size_on_the_port_is_FT1101_at_rank_0()
    {
        var port = FreePort();
        var leader = Rank(() => TcpRendezvous.Share(new byte[128], 0, 2, "127.0.0.1", port,
            TimeSpan.FromSeconds(20)));
        var stranger = Rank(() =>
        {
            try { return TcpRendezvous.Share(null, 1, 4, "127.0.0.1", port, TimeSpan.FromSeconds(20)); }
            catch (FineTuneException) { return []; }
        });
        var error = await Assert.ThrowsAsync<FineTuneException>(() => leader);
        Assert.Equal(DiagnosticCodes.LauncherMismatch, Assert.Single(error.Diagnostics).Code);
        Assert.Contains("rank 1 of 4", error.Message);
        await stranger;
    }

    [Fact]
    public void A_taken_port_is_FT1103_that_says_to_choose_another_master_port()
    {
        using var taken = new TcpListener(IPAddress.Any, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var error = Assert.Throws<FineTuneException>(() =>
            TcpRendezvous.Share(new byte[128], 0, 2, "127.0.0.1", port, TimeSpan.FromSeconds(5)));
        Assert.Equal(DiagnosticCodes.CollectiveFailed, Assert.Single(error.Diagnostics).Code);
        Assert.Contains("MASTER_PORT", error.Message);
    }

    /// <summary>A rank on a thread of its own, as each rank is a process of its own: the exchange blocks.</summary>
    private static Task<byte[]> Rank(Func<byte[]> share) =>
        Task.Factory.StartNew(share, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
