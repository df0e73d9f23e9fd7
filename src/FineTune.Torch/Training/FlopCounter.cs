using System.Diagnostics;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>
/// Model FLOPs of a training step, for MFU (model FLOP utilisation). Per micro-batch, forward + backward = 3x forward:
/// <code>
///   6 * N * tokens                      N = parameters outside the embedding and head (each weight: one multiply-add
///   per token)
/// + 6 * layers * hidden * T * tokens    attention: scores and weighted sum are 4 * hidden * T per token and layer
/// forward,
///                                       12 with backward, half of it under the causal mask (the PaLM convention)
/// + 6 * hidden * vocab * trained        the output head, run only at positions that carry a label
/// </code>
/// T is the padded length of the batch. Padding is not counted as useful work in <c>tokens</c>.
/// </summary>
internal sealed class FlopCounter(LlamaConfig config, long nonEmbeddingParameters)
{
    public double TrainingFlops(long tokens, int paddedLength, int trainedPositions) =>
        6.0 * nonEmbeddingParameters * tokens
        + 6.0 * config.NumHiddenLayers * config.HiddenSize * paddedLength * tokens
        + 6.0 * config.HiddenSize * config.VocabSize * trainedPositions;

    /// <summary>
    /// Peak dense matmul FLOP/s of this device and dtype, the denominator of MFU: the fastest single product over a few
    /// shapes, timed for about <paramref name="seconds"/> in all. One shape is not enough: on this kind of CPU a
    /// 1024-square fp32 product runs at half the speed of 768 or 1536 (power-of-two strides), which would make MFU
    /// exceed 100 %.
    /// </summary>
    public static double MeasureMatmulFlops(Device device, ScalarType dtype, double seconds = 0.3)
    {
        int[] sizes = [512, 768, 1536];
        var best = 0.0;
        foreach (var n in sizes)
        {
            using var scope = NewDisposeScope();
            var a = randn(n, n, dtype: dtype, device: device);
            var b = randn(n, n, dtype: dtype, device: device);
            a.matmul(b).Dispose(); // warm-up: thread pool, kernel selection
            var budget = Stopwatch.StartNew();
            do
            {
                var clock = Stopwatch.StartNew();
                using var product = a.matmul(b);
                if (device.type == TorchSharp.DeviceType.CUDA) product.cpu().Dispose(); // synchronise
                best = Math.Max(best, 2.0 * n * n * n / clock.Elapsed.TotalSeconds);
            }
            while (budget.Elapsed.TotalSeconds < seconds / sizes.Length);
        }
        return best;
    }
}
