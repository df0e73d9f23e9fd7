using System.Runtime.Intrinsics;
using FineTune.Core.Data;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// A CPU tensor of booleans, each true with probability p, drawn from SplitMix64 as a counter-based generator: word i
/// of a stream is mix(seed + (i + 1)·γ), and its low and high 32 bits decide elements 2i and 2i + 1 (true where the
/// value is below round(p·2^32)). Each element depends on (seed, index) alone, so the mask is drawn vectorised and on
/// every core; libtorch's rand draws serially from one Mersenne twister, which cost a LoRA training step on 2 cores
/// about a sixth of its time. For the same reason a kernel can apply a mask without it ever being stored:
/// <see cref="Kept"/> and <see cref="AddKept"/> redraw it from the seed while they pass over float32 values.
/// </summary>
internal static class BernoulliMask
{
    // Elements per parallel work item (even, so every item starts on a word): scheduling is negligible against it.
    private const int ElementsPerWorkItem = 1 << 16;
    // Elements per vectorised round: 16 words.
    private const int ElementsPerRound = 32;

    public static Tensor Draw(long[] shape, ulong seed, double p)
    {
        var mask = empty(shape, ScalarType.Bool);
        var threshold = Threshold(p);
        var address = Address(mask);
        unsafe
        {
            ForEachRange(mask.bytes.Length, (first, end) => FillRange((byte*)address, first, end, seed, threshold));
        }
        return mask;
    }

    /// <summary>
    /// x with the elements this mask drops set to zero, as x.masked_fill(Draw(x.shape, seed, p), 0) computes it,
    /// in one pass; x is a float32 CPU tensor.
    /// </summary>
    public static Tensor Kept(Tensor x, ulong seed, double p)
    {
        var source = x.contiguous();
        var result = empty_like(source);
        var threshold = Threshold(p);
        var (from, to) = (Address(source), Address(result));
        unsafe
        {
            ForEachRange(checked((int)source.numel()), (first, end) => KeepRange((float*)from, (float*)to, first, end, seed, threshold, add: false));
        }
        if (!ReferenceEquals(source, x)) source.Dispose();
        return result;
    }

    /// <summary>
    /// target += addend with the elements this mask drops left out, in one pass; both are contiguous float32 CPU
    /// tensors of one shape. The kept sums are exactly those of target + addend.masked_fill(mask, 0).
    /// </summary>
    public static void AddKept(Tensor target, Tensor addend, ulong seed, double p)
    {
        if (!target.is_contiguous() || !addend.is_contiguous() || !target.shape.SequenceEqual(addend.shape))
            throw new ArgumentException("AddKept needs two contiguous tensors of one shape");
        var threshold = Threshold(p);
        var (from, to) = (Address(addend), Address(target));
        unsafe
        {
            ForEachRange(checked((int)target.numel()), (first, end) => KeepRange((float*)from, (float*)to, first, end, seed, threshold, add: true));
        }
    }

    /// <summary>round(p·2^32): an element is dropped where its 32 random bits are below it.</summary>
    public static uint Threshold(double p) => (uint)Math.Clamp(Math.Round(p * 4294967296.0), 0, uint.MaxValue);

    // The data of a contiguous CPU tensor, which lives outside the managed heap: nothing to pin.
    private static unsafe nint Address(Tensor tensor)
    {
        fixed (byte* data = tensor.bytes) return (nint)data;
    }

    private static void ForEachRange(int count, Action<int, int> range) =>
        Parallel.For(0, (count + ElementsPerWorkItem - 1) / ElementsPerWorkItem, item =>
        {
            var first = item * ElementsPerWorkItem;
            range(first, Math.Min(first + ElementsPerWorkItem, count));
        });

    /// <summary>Elements [first, end) of the mask; first is even.</summary>
    internal static unsafe void FillRange(byte* mask, int first, int end, ulong seed, uint threshold)
    {
        var element = first;
        if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256.Create((byte)1);
            for (; element + ElementsPerRound <= end; element += ElementsPerRound)
            {
                var (a, b, c, d) = DroppedRound(seed, element, threshold);
                var bytes = Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)) & one;
                bytes.Store(mask + element);
            }
        }
        for (; element < end; element++) mask[element] = Dropped(seed, element, threshold) ? (byte)1 : (byte)0;
    }

    /// <summary>to[i] = from[i] (or to[i] += from[i]) for the kept elements of [first, end), 0 (or nothing) else.</summary>
    private static unsafe void KeepRange(float* from, float* to, int first, int end, ulong seed, uint threshold, bool add)
    {
        var element = first;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; element + ElementsPerRound <= end; element += ElementsPerRound)
            {
                var (a, b, c, d) = DroppedRound(seed, element, threshold);
                KeepVector(from + element, to + element, a, add);
                KeepVector(from + element + 8, to + element + 8, b, add);
                KeepVector(from + element + 16, to + element + 16, c, add);
                KeepVector(from + element + 24, to + element + 24, d, add);
            }
        }
        for (; element < end; element++)
        {
            var kept = Dropped(seed, element, threshold) ? 0f : from[element];
            to[element] = add ? to[element] + kept : kept;
        }
    }

    private static unsafe void KeepVector(float* from, float* to, Vector256<uint> dropped, bool add)
    {
        // Dropped lanes are all ones: clearing their bits gives +0, which masked_fill writes too.
        var kept = Vector256.AndNot(Vector256.Load(from), dropped.AsSingle());
        (add ? Vector256.Load(to) + kept : kept).Store(to);
    }

    /// <summary>
    /// Whether elements element .. element + 31 are dropped (all ones) or kept (zero), eight per vector in order;
    /// element is even.
    /// </summary>
    private static (Vector256<uint>, Vector256<uint>, Vector256<uint>, Vector256<uint>) DroppedRound(ulong seed, int element, uint threshold)
    {
        var gamma = Vector256.Create(SplitMix64.Gamma);
        // Words element/2 .. element/2 + 3; a word's low half is the even element, its high half the odd one.
        var state = Vector256.Create(seed + (ulong)(element / 2) * SplitMix64.Gamma) + Vector256.Create(1UL, 2, 3, 4) * gamma;
        var step = gamma * 4;
        var limit = Vector256.Create(threshold);
        return (Vector256.LessThan(MixVector(state).AsUInt32(), limit),
            Vector256.LessThan(MixVector(state + step).AsUInt32(), limit),
            Vector256.LessThan(MixVector(state + step * 2).AsUInt32(), limit),
            Vector256.LessThan(MixVector(state + step * 3).AsUInt32(), limit));
    }

    private static bool Dropped(ulong seed, int element, uint threshold)
    {
        var word = SplitMix64.At(seed, (ulong)(element / 2));
        return (uint)(element % 2 == 0 ? word : word >> 32) < threshold;
    }

    private static Vector256<ulong> MixVector(Vector256<ulong> z)
    {
        z = (z ^ Vector256.ShiftRightLogical(z, 30)) * Vector256.Create(SplitMix64.Multiplier1);
        z = (z ^ Vector256.ShiftRightLogical(z, 27)) * Vector256.Create(SplitMix64.Multiplier2);
        return z ^ Vector256.ShiftRightLogical(z, 31);
    }
}
