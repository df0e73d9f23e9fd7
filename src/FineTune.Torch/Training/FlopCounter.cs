using System.Diagnostics;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>
/// Model FLOPs of a training step, for MFU (model FLOP utilisation). Per token of a micro-batch:
/// <code>
///   6 * N_trained + 4 * N_frozen       each weight: a multiply-add forward, one for the input's gradient, one for its
///                                      own gradient; frozen weights (a LoRA base) skip the last: 4N + 6N_lora
/// + 6 * layers * hidden * T           attention scores and weighted sum (4 * hidden * T forward, 12 with backward,
///                                      half of it under the causal mask: the PaLM convention)
/// + 2 * N + 2 * layers * hidden * T   under gradient checkpointing: the layers' forward again in backward
/// + 6 (4 frozen) * hidden * vocab     per position that carries a label: the output head runs only there
/// </code>
/// N counts parameters outside the embedding and head; T is the padded length of the batch. Padding is not counted
/// as useful work in <c>tokens</c>.
/// </summary>
internal sealed class FlopCounter
{
    private readonly LlamaConfig _config;
    private readonly long _nonEmbeddingParameters;

    public FlopCounter(LlamaConfig config, long nonEmbeddingParameters)
    {
        _config = config;
        _nonEmbeddingParameters = nonEmbeddingParameters;
        TrainedParameters = nonEmbeddingParameters;
    }

    /// <summary>Non-embedding parameters that are trained; the rest are frozen. All by default.</summary>
    public long TrainedParameters { get; init; }

    /// <summary>Whether the output head's weight is trained (full fine-tuning, tied or not).</summary>
    public bool HeadTrained { get; init; } = true;

    /// <summary>Gradient checkpointing: each layer's forward runs again in backward.</summary>
    public bool Recomputed { get; init; }

    /// <summary>The counter of <paramref name="model"/> as it trains: frozen weights, head, checkpointing.</summary>
    public static FlopCounter Of(LlamaForCausalLM model)
    {
        var named = model.named_parameters().ToList();
        static bool IsHead(string name) => name.StartsWith("lm_head.", StringComparison.Ordinal);
        static bool IsEmbedding(string name) => name.StartsWith("model.embed_tokens.", StringComparison.Ordinal);
        return new FlopCounter(model.Config, model.NonEmbeddingParameterCount())
        {
            TrainedParameters = named.Where(p => p.parameter.requires_grad && !IsHead(p.name) && !IsEmbedding(p.name))
                .Sum(p => p.parameter.numel()),
            HeadTrained = named.Any(p => p.parameter.requires_grad
                && (IsHead(p.name) || (model.Config.TieWordEmbeddings && IsEmbedding(p.name)))),
            Recomputed = model.GradientCheckpointing,
        };
    }

    public double TrainingFlops(long tokens, int paddedLength, int trainedPositions)
    {
        var frozen = _nonEmbeddingParameters - TrainedParameters;
        var attention = (double)_config.NumHiddenLayers * _config.HiddenSize * paddedLength;
        var perToken = 6.0 * TrainedParameters + 4.0 * frozen + 6.0 * attention
            + (Recomputed ? 2.0 * _nonEmbeddingParameters + 2.0 * attention : 0);
        var head = (HeadTrained ? 6.0 : 4.0) * _config.HiddenSize * _config.VocabSize;
        return perToken * tokens + head * trainedPositions;
    }

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
