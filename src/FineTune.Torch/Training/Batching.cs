using FineTune.Core.Data;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Training;

/// <summary>
/// The order examples are trained in: per epoch a seeded shuffle, then examples of similar length grouped into the
/// same micro-batch (sorted within windows of many batches) so right-padding wastes little, then the batches shuffled
/// again so lengths do not march in order through the epoch. The plan of an epoch depends only on (seed, epoch), so a
/// resumed run needs nothing but the index of the next micro-batch.
/// </summary>
internal static class Batching
{
    /// <summary>Batches per sorting window: larger pads less but makes batch lengths less random.</summary>
    private const int WindowBatches = 64;

    public static IReadOnlyList<int[]> EpochBatches(TokenizedDataset data, int batchSize, int seed, int epoch)
    {
        // Not HashCode.Combine or System.Random: the first is salted per process, the second's algorithm is not
        // promised across .NET versions; the same seed must give the same batches in every run.
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

    /// <summary>
    /// Packing: the epoch's examples, in the seeded shuffled order, go greedily into the first row with room for their
    /// input tokens (length - 1: the last token only serves as a target), rows hold at most
    /// <paramref name="rowLength"/> tokens; then the rows are shuffled and cut into batches of
    /// <paramref name="batchSize"/> rows. Each batch is a list of rows, each row a list of examples in order. Like
    /// <see cref="EpochBatches"/>, it depends only on (seed, epoch).
    /// </summary>
    public static IReadOnlyList<int[][]> PackedEpochBatches(TokenizedDataset data, int rowLength, int batchSize,
        int seed, int epoch)
    {
        var random = new SplitMix64(((ulong)(uint)seed << 32) | (uint)epoch);
        var usable = Enumerable.Range(0, data.Count).Where(i => data.Length(i) >= 2).ToArray();
        random.Shuffle(usable);
        var rows = new List<List<int>>();
        var room = new FirstFit(usable.Length);
        foreach (var example in usable)
        {
            var tokens = data.Length(example) - 1;
            // An example longer than a row (tokenize truncates, so only from other callers) gets a row of its own.
            var row = tokens > rowLength ? -1 : room.FirstWithRoom(tokens);
            if (row < 0)
            {
                row = rows.Count;
                rows.Add([]);
                room.Set(row, Math.Max(0, rowLength - tokens));
            }
            else room.Set(row, room.Get(row) - tokens);
            rows[row].Add(example);
        }
        var order = rows.Select(r => r.ToArray()).ToArray();
        random.Shuffle(order);
        var batches = new List<int[][]>();
        for (var b = 0; b < order.Length; b += batchSize) batches.Add(order.Skip(b).Take(batchSize).ToArray());
        return batches;
    }

    /// <summary>
    /// Room left in each row, in a max segment tree, so the first row with enough room is found in log(rows).
    /// </summary>
    private sealed class FirstFit
    {
        private readonly int _leaves;
        private readonly int[] _max;

        public FirstFit(int capacity)
        {
            _leaves = 1;
            while (_leaves < Math.Max(1, capacity)) _leaves *= 2;
            _max = new int[2 * _leaves];
        }

        public int Get(int row) => _max[_leaves + row];

        public void Set(int row, int room)
        {
            var node = _leaves + row;
            _max[node] = room;
            for (node /= 2; node >= 1; node /= 2) _max[node] = Math.Max(_max[2 * node], _max[2 * node + 1]);
        }

        /// <summary>
        /// The lowest row index with at least <paramref name="tokens"/> of room, or -1 (unopened rows have 0).
        /// </summary>
        public int FirstWithRoom(int tokens)
        {
            if (_max[1] < tokens) return -1;
            var node = 1;
            while (node < _leaves) node = _max[2 * node] >= tokens ? 2 * node : 2 * node + 1;
            return node - _leaves;
        }
    }
}
