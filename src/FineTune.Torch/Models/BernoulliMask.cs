using System.Runtime.Intrinsics;
using FineTune.Core.Data;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// A CPU tensor of booleans, each true with probability p, drawn from SplitMix64 as a counter-based generator: word i
/// of a stream is mix(seed + (i + 1)·γ), and its low and high 32 bits decide elements 2i and 2i + 1 (true where the
/// value is below round(p·2^32)). Each element depends on (seed, index) alone, so the mask is drawn vectorised and on
/// every core; libtorch's rand draws serially from one Mersenne twister, which cost a LoRA training step on 2 cores
/// about a sixth of its time.
/// </summary>
internal static class BernoulliMask
{
    // Elements per parallel work item (even, so every item starts on a word): scheduling is negligible against it.
    private const int ElementsPerWorkItem = 1 << 16;

    public static Tensor Draw(long[] shape, ulong seed, double p)
    {
        var mask = empty(shape, ScalarType.Bool);
        var threshold = Threshold(p);
        Fill(mask.bytes, seed, threshold);
        return mask;
    }

    /// <summary>round(p·2^32): an element is dropped where its 32 random bits are below it.</summary>
    public static uint Threshold(double p) => (uint)Math.Clamp(Math.Round(p * 4294967296.0), 0, uint.MaxValue);

    private static unsafe void Fill(Span<byte> mask, ulong seed, uint threshold)
    {
        var count = mask.Length;
        fixed (byte* target = mask)
        {
            var address = (nint)target;
            Parallel.For(0, (count + ElementsPerWorkItem - 1) / ElementsPerWorkItem, item =>
            {
                var first = item * ElementsPerWorkItem;
                FillRange((byte*)address, first, Math.Min(first + ElementsPerWorkItem, count), seed, threshold);
            });
        }
    }

    /// <summary>Elements [first, end) of the mask; first is even.</summary>
    internal static unsafe void FillRange(byte* mask, int first, int end, ulong seed, uint threshold)
    {
        var element = first;
        if (Vector256.IsHardwareAccelerated)
        {
            // 16 words, 32 elements per round: four vectors of 8 uint halves narrowed to one vector of 32 bytes.
            var gamma = Vector256.Create(SplitMix64.Gamma);
            var lanes = Vector256.Create(1UL, 2, 3, 4) * gamma;
            var limit = Vector256.Create(threshold);
            var one = Vector256.Create((byte)1);
            for (; element + 32 <= end; element += 32)
            {
                var state = Vector256.Create(seed + (ulong)(element / 2) * SplitMix64.Gamma) + lanes;
                var step = gamma * 4;
                var a = Vector256.LessThan(MixVector(state).AsUInt32(), limit);
                var b = Vector256.LessThan(MixVector(state + step).AsUInt32(), limit);
                var c = Vector256.LessThan(MixVector(state + step * 2).AsUInt32(), limit);
                var d = Vector256.LessThan(MixVector(state + step * 3).AsUInt32(), limit);
                var bytes = Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)) & one;
                bytes.Store(mask + element);
            }
        }
        for (; element < end; element += 2)
        {
            var word = SplitMix64.At(seed, (ulong)(element / 2));
            mask[element] = (uint)word < threshold ? (byte)1 : (byte)0;
            if (element + 1 < end) mask[element + 1] = (uint)(word >> 32) < threshold ? (byte)1 : (byte)0;
        }
    }

    private static Vector256<ulong> MixVector(Vector256<ulong> z)
    {
        z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(SplitMix64.Multiplier1);
        z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(SplitMix64.Multiplier2);
        return z ^ Vector256.ShiftRightLogical(z, 31);
    }
}
