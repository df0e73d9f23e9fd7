using System.Diagnostics;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>
/// Model FLOPs of a training step, for MFU (model FLOP utilisation). Per micro-batch, forward + backward = 3x forward:
/// <code>
///   6 * N * tokens                      N = parameters outside the embedding and head (each weight: one multiply-add per token)
/// + 6 * layers * hidden * T * tokens    attention: scores and weighted sum are 4 * hidden * T per token and layer forward,
///                                       12 with backward, half of it under the causal mask (the PaLM convention)
/// + 6 * hidden * vocab * trained        the output head, run only at positions that carry a label
/// </code>
/// T is the padded length of the batch. Padding is not counted as useful work in <c>tokens</c>.
/// </summary>
public sealed class FlopCounter(LlamaConfig config, long nonEmbeddingParameters)
{
    public double TrainingFlops(long tokens, int paddedLength, int trainedPositions) =>
        6.0 * nonEmbeddingParameters * tokens
        + 6.0 * config.NumHiddenLayers * config.HiddenSize * paddedLength * tokens
        + 6.0 * config.HiddenSize * config.VocabSize * trainedPositions;

    /// <summary>Dense matmul FLOP/s of this device and dtype, measured for about 0.3 s: the denominator of MFU.</summary>
    public static double MeasureMatmulFlops(Device device, ScalarType dtype, double seconds = 0.3)
    {
        const int n = 1024;
        using var scope = NewDisposeScope();
        var a = randn(n, n, dtype: dtype, device: device);
        var b = randn(n, n, dtype: dtype, device: device);
        a.matmul(b).Dispose(); // warm-up: thread pool, kernel selection
        var clock = Stopwatch.StartNew();
        var count = 0;
        while (clock.Elapsed.TotalSeconds < seconds || count < 2)
        {
            using var product = a.matmul(b);
            if (device.type == TorchSharp.DeviceType.CUDA) product.cpu().Dispose(); // synchronise
            count++;
        }
        return 2.0 * n * n * n * count / clock.Elapsed.TotalSeconds;
    }
}
