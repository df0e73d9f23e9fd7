using FineTune.Core.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// Dropout whose masks come from seeds rather than from a generator's running state. Each draw gets its own seed,
/// derived from a stream seed (the trainer starts one per micro-batch) and the number of draws so far, so a mask is a
/// function of (stream, draw index) alone. Gradient checkpointing therefore redraws a layer's masks by putting back the
/// <see cref="Position"/> the layer started at; no generator state has to be saved, which matters on CUDA, where
/// TorchSharp reaches none. A resumed run also draws exactly the masks the uninterrupted one drew.
/// The position is per thread: CUDA's backward (and so the recompute) runs on an autograd thread, which gets the
/// position from the checkpoint, and tests that run side by side do not share a stream.
/// </summary>
internal static class SeededDropout
{
    public readonly record struct Position(ulong Stream, long Draws);

    [ThreadStatic] private static ulong t_stream;
    [ThreadStatic] private static long t_draws;

    /// <summary>
    /// Draws the CPU masks the way non-CPU devices draw theirs, from the reseeded default generator (tests).
    /// </summary>
    [ThreadStatic] internal static bool t_reseedDefaultGenerator;

    public static Position Current => new(t_stream, t_draws);

    public static void MoveTo(Position position) => (t_stream, t_draws) = (position.Stream, position.Draws);

    /// <summary>
    /// Starts the stream of masks for one micro-batch of a run: the trainer passes (seed, micro-batch index).
    /// </summary>
    public static void StartStream(long seed, long stream)
        => MoveTo(new Position(SplitMix64.At(SplitMix64.At((ulong)seed, 0) + (ulong)stream, 0), 0));

    /// <summary>
    /// nn.Dropout: in training, zeroes each element with probability p and scales the rest by 1/(1-p).
    /// </summary>
    public static Tensor Apply(Tensor x, double p, bool training)
    {
        if (!training || p == 0) return x;
        // masked_fill keeps a one-byte mask for backward where x * mask would keep a float one.
        return ZeroDropped(x, p).mul(1 / (1 - p));
    }

    /// <summary>
    /// Dropout without its 1/(1-p) scale, for a caller that applies the scale where it is cheaper (LoRA: on the
    /// rank-r side of the update rather than over the [tokens, in] input).
    /// </summary>
    public static Tensor ZeroDropped(Tensor x, double p)
    {
        using var dropped = DrawMask(x.shape, x.device, p);
        return x.masked_fill(dropped, 0);
    }

    /// <summary>
    /// For a kernel that applies the mask itself (<see cref="BernoulliMask.Kept"/>): the seed of the next draw, which
    /// it takes, when masks of <paramref name="x"/>'s size on its device come from <see cref="BernoulliMask"/>; null
    /// (and nothing drawn) where the caller has to use <see cref="ZeroDropped"/>.
    /// </summary>
    public static ulong? NextBernoulliMaskSeed(Tensor x) =>
        DrawsBernoulliMask(x.device, x.numel()) ? NextSeed() : null;

    private static bool DrawsBernoulliMask(Device device, long count) =>
        device.type == DeviceType.CPU && !t_reseedDefaultGenerator && count <= int.MaxValue;

    private static ulong NextSeed() => SplitMix64.At(t_stream + (ulong)t_draws++, 0);

    /// <summary>Where to drop: true with probability p, a function of (stream, draw index) alone.</summary>
    private static Tensor DrawMask(long[] shape, Device device, double p)
    {
        var seed = NextSeed();
        if (DrawsBernoulliMask(device, shape.Aggregate(1L, (a, b) => a * b)))
            return BernoulliMask.Draw(shape, seed, p);
        // TorchSharp 0.107 creates CPU generators only (THSGenerator_new ignores the device), so other devices reseed
        // their default generator right before the draw: the draw still depends on the seed alone. Like Python's
        // torch.manual_seed, this seeds every device's default generator, the CPU's included.
        random.manual_seed((long)seed).Dispose();
        using var uniform = rand(shape, device: device);
        return uniform.lt(p);
    }
}
