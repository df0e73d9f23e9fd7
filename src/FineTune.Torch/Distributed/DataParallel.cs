using System.Globalization;
using System.Security.Cryptography;
using FineTune.Core.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Data-parallel training over the ranks of one launch. Every rank holds the whole model and the same seeded batch
/// order of global batches of world size x batch_size rows; each trains its own slice of every global batch, the
/// gradients are summed once per optimizer step, and every rank takes the same optimizer step. Since the loss of a
/// step is divided by the label count of the whole global batch (which every rank knows), the summed gradient is
/// exactly the one a single process computes on the global batch. Rank 0 alone writes files.
/// </summary>
internal sealed class DataParallel : IDisposable
{
    /// <summary>Gradients travel in buffers of at most this many float32 values (256 MB).</summary>
    private const long BucketElements = 64L << 20;

    /// <summary>Seconds a collective may wait for the other ranks, unless FINETUNE_COLLECTIVE_TIMEOUT says.</summary>
    public const int DefaultTimeoutSeconds = 600;

    private readonly ICollectives _collectives;
    private bool _finished;

    public DataParallel(ICollectives collectives) => _collectives = collectives;

    public int Rank => _collectives.Rank;
    public int WorldSize => _collectives.WorldSize;
    public bool IsLeader => Rank == 0;
    public string Backend => _collectives.Backend;

    /// <summary>Seconds spent in gradient all-reduces so far (for the summary and the bench).</summary>
    public double AllReduceSeconds { get; private set; }

    /// <summary>
    /// Whether training runs data-parallel: <paramref name="mode"/> auto and a launcher that started more than one
    /// process.
    /// </summary>
    public static bool IsOn(string mode, LauncherEnvironment launcher) => mode != "off" && launcher.IsMultiProcess;

    /// <summary>
    /// Joins the launch's world (null when training is not data-parallel). The backend follows the device: nccl for
    /// CUDA, mpi for the CPU.
    /// </summary>
    public static DataParallel? Start(string mode, LauncherEnvironment launcher, Device device)
    {
        if (!IsOn(mode, launcher)) return null;
        var timeout = TimeSpan.FromSeconds(TimeoutSeconds());
        ICollectives collectives = device.type == DeviceType.CUDA
            ? NcclCollectives.Start(launcher, device, timeout)
            : MpiCollectives.Start(timeout);
        if (collectives.WorldSize != launcher.WorldSize || collectives.Rank != launcher.Rank)
        {
            var seen = $"{collectives.Backend} sees rank {collectives.Rank} of {collectives.WorldSize}";
            collectives.Dispose();
            throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
                $"{launcher.Launcher} started rank {launcher.Rank} of {launcher.WorldSize}, but {seen}: start " +
                "the ranks with mpirun (or srun --mpi=pmix) for the mpi backend", ExitCodes.InvalidInput);
        }
        return new DataParallel(collectives);
    }

    private static int TimeoutSeconds()
    {
        var text = Environment.GetEnvironmentVariable("FINETUNE_COLLECTIVE_TIMEOUT");
        if (string.IsNullOrEmpty(text)) return DefaultTimeoutSeconds;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? seconds
            : throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
                $"FINETUNE_COLLECTIVE_TIMEOUT='{text}' is not a positive whole number of seconds",
                ExitCodes.InvalidInput);
    }

    /// <summary>This rank's rows of a global batch: the slice [rank x size, (rank + 1) x size).</summary>
    public T[] ShareOf<T>(T[] globalRows, int rowsPerRank)
    {
        var start = Math.Min(globalRows.Length, Rank * rowsPerRank);
        var end = Math.Min(globalRows.Length, start + rowsPerRank);
        return globalRows[start..end];
    }

    /// <summary>
    /// Sums the gradients of <paramref name="parameters"/> over the ranks in place (a parameter without a gradient,
    /// on a rank whose slice did not reach it, counts as zeros), and sums <paramref name="figures"/> (loss, token
    /// counts) with them.
    /// </summary>
    public void SumGradients(IReadOnlyList<Parameter> parameters, double[] figures)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            foreach (var bucket in Buckets(parameters))
            {
                var flat = cat(bucket.Select(p => (p.grad ?? zeros_like(p)).to(ScalarType.Float32).flatten())
                    .ToList()).to(_collectives.BufferDevice).contiguous();
                _collectives.AllReduceSum(Collectives.DataPointer<float>(flat), flat.numel(),
                    "the gradient all-reduce");
                long offset = 0;
                foreach (var p in bucket)
                {
                    var summed = flat.narrow(0, offset, p.numel()).view_as(p).to(p.dtype).to(p.device);
                    offset += p.numel();
                    if (p.grad is { } grad) grad.copy_(summed);
                    else p.grad = summed.clone().DetachFromDisposeScope();
                }
            }
        }
        var values = figures.Select(f => (float)f).ToArray();
        _collectives.AllReduceSum(values, "the loss all-reduce");
        for (var i = 0; i < figures.Length; i++) figures[i] = values[i];
        AllReduceSeconds += clock.Elapsed.TotalSeconds;
    }

    private static IEnumerable<List<Parameter>> Buckets(IReadOnlyList<Parameter> parameters)
    {
        var bucket = new List<Parameter>();
        long size = 0;
        foreach (var p in parameters)
        {
            if (bucket.Count > 0 && size + p.numel() > BucketElements) { yield return bucket; bucket = []; size = 0; }
            bucket.Add(p);
            size += p.numel();
        }
        if (bucket.Count > 0) yield return bucket;
    }

    /// <summary>
    /// Checks that every rank starts from rank 0's weights and position: a hash of both is broadcast from rank 0 and
    /// compared on each rank; any difference fails every rank with FT1104.
    /// </summary>
    public void VerifySameStart(IEnumerable<(string Name, Tensor Value)> weights, string position)
    {
        var hash = HashOf(weights, position);
        var leader = hash.ToArray();
        _collectives.Broadcast(leader, 0, "the start check");
        var differing = new[] { leader.AsSpan().SequenceEqual(hash) ? 0f : 1f };
        _collectives.AllReduceSum(differing, "the start check");
        if (differing[0] > 0)
            throw new FineTuneException(DiagnosticCodes.RanksDiverged,
                $"{differing[0]:0} of {WorldSize} ranks start from weights or a position other than rank 0's " +
                $"(this is rank {Rank}{(hash.SequenceEqual(leader) ? ", which agrees" : ", which differs")}): " +
                "every rank must see the same model files, checkpoint and seed", ExitCodes.StageFailed);
    }

    private static byte[] HashOf(IEnumerable<(string Name, Tensor Value)> weights, string position)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(position));
        using var scope = NewDisposeScope();
        foreach (var (name, value) in weights.OrderBy(w => w.Name, StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            var flat = value.detach().cpu().contiguous().flatten();
            // Spans are limited to int.MaxValue bytes; big tensors go in slices.
            var perChunk = Math.Max(1, (1L << 28) / Math.Max(1, flat.element_size()));
            for (long start = 0; start < flat.numel(); start += perChunk)
                sha.AppendData(flat.narrow(0, start, Math.Min(perChunk, flat.numel() - start)).bytes);
        }
        return sha.GetHashAndReset();
    }

    public void Barrier(string what) => _collectives.Barrier(what);

    /// <summary>After the last collective of a successful run: every rank leaves the backend together.</summary>
    public void Finish()
    {
        _collectives.Barrier("the end of training");
        _finished = true;
    }

    /// <summary>
    /// Finishes the backend after <see cref="Finish"/>; after a failure it leaves it alone, since finishing waits for
    /// ranks that may be gone, and the launcher ends the others when this process exits.
    /// </summary>
    public void Dispose()
    {
        if (_finished) _collectives.Dispose();
    }
}
