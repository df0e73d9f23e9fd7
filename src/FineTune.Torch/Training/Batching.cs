using FineTune.Core.Data;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Training;

/// <summary>
/// The order examples are trained in: per epoch a seeded shuffle, then examples of similar length grouped into the
/// same micro-batch (sorted within windows of many batches) so right-padding wastes little, then the batches shuffled
/// again so lengths do not march in order through the epoch. The plan of an epoch depends only on (seed, epoch), so a
/// resumed run needs nothing but the index of the next micro-batch.
/// </summary>
public static class Batching
{
    /// <summary>Batches per sorting window: larger pads less but makes batch lengths less random.</summary>
    private const int WindowBatches = 64;

    public static IReadOnlyList<int[]> EpochBatches(TokenizedDataset data, int batchSize, int seed, int epoch)
    {
        // Not HashCode.Combine or System.Random: the first is salted per process, the second's algorithm is not promised
        // across .NET versions; the same seed must give the same batches in every run.
        var random = new SplitMix64(((ulong)(uint)seed << 32) | (uint)epoch);
        var usable = Enumerable.Range(0, data.Count).Where(i => data.Length(i) >= 2).ToArray();
        random.Shuffle(usable);
        var batches = new List<int[]>();
        var window = batchSize * WindowBatches;
        for (var start = 0; start < usable.Length; start += window)
        {
            var chunk = usable.Skip(start).Take(window).OrderByDescending(data.Length).ThenBy(i => i).ToArray();
            for (var b = 0; b < chunk.Length; b += batchSize) batches.Add(chunk.Skip(b).Take(batchSize).ToArray());
        }
        var order = batches.ToArray();
        random.Shuffle(order);
        return order;
    }
}
