using System.Text.Json;
using FineTune.Core.Diagnostics;
using FineTune.Core.Stages;
using FineTune.TestKit;
using FineTune.Torch.Distributed;
using FineTune.Torch.Training;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Distributed;

/// <summary>What keeps the ranks of a data-parallel run training one model: the start check and the world size of a
/// checkpoint.</summary>
public class DataParallelChecksTests
{
    [Fact]
    public void Ranks_that_agree_with_rank_0_start()
    {
        using var parallel = new DataParallel(new LoopbackCollectives(differentLeader: false));
        using var weight = ones(3, 2);
        parallel.VerifySameStart([("w", weight)], "step 0");
    }

    [Fact]
    public void A_rank_whose_weights_differ_from_rank_0s_is_FT1104()
    {
        using var parallel = new DataParallel(new LoopbackCollectives(differentLeader: true));
        using var weight = ones(3, 2);
        var error = Assert.Throws<FineTuneException>(() => parallel.VerifySameStart([("w", weight)], "step 0"));
        Assert.Contains(DiagnosticCodes.RanksDiverged, error.Message);
        Assert.Contains("which differs", error.Message);
    }

    [Theory]
    [InlineData(false, DiagnosticCodes.CheckpointSettingsChanged)]
    [InlineData(true, DiagnosticCodes.CheckpointCannotTakeChanges)]
    public void A_checkpoint_of_another_world_size_is_not_resumed(bool withChanges, string code)
    {
        using var temp = new TempFolder();
        var saved = Path.Combine(temp.Path, "work", "train-aaaa");
        Directory.CreateDirectory(TrainingCheckpoint.FolderIn(saved));
        File.WriteAllText(TrainingCheckpoint.StatePathIn(saved), JsonSerializer.Serialize(
            new TrainingCheckpoint.State("old", 42, 3, 6, 100, 50, 10.0, 1.0)));
        var settings = new Dictionary<string, string> { ["epochs"] = "2" };
        File.WriteAllText(Path.Combine(saved, CheckpointGuard.IdentityFile), JsonSerializer.Serialize(
            new RunIdentity("p.yaml", "old", settings, "data", "cpu (2 ranks)", 4)));

        var error = Assert.Throws<FineTuneException>(() => CheckpointGuard.Prepare(
            Path.Combine(temp.Path, "work", "train-bbbb"), "train",
            new RunIdentity("p.yaml", "new", settings, "data", "cpu", 4),
            withChanges ? CheckpointPolicy.ResumeWithChanges : CheckpointPolicy.Resume, new RecordingLog()));
        Assert.Contains(code, error.Message);
        Assert.Contains("data-parallel ranks: cpu (2 ranks) -> cpu", error.Message);
    }

    /// <summary>One rank alone, whose broadcast delivers either its own bytes or another rank 0's.</summary>
    private sealed class LoopbackCollectives(bool differentLeader) : ICollectives
    {
        public int Rank => 1;
        public int WorldSize => 2;
        public string Backend => "loopback";
        public TorchSharp.torch.Device BufferDevice => TorchSharp.torch.CPU;
        public void AllReduceSum(nint buffer, long count, string what) { }

        public void Broadcast(nint buffer, long count, int root, string what)
        {
            if (differentLeader)
                System.Runtime.InteropServices.Marshal.Copy(Enumerable.Repeat((byte)7, (int)count).ToArray(), 0,
                    buffer, (int)count);
        }

        public void Barrier(string what) { }
        public void Dispose() { }
    }
}
