using System.Globalization;
using FineTune.Torch.Models;

namespace FineTune.Bench;

/// <summary>What the training benchmarks share: the model shape they measure and the process's memory figures.</summary>
internal static class BenchModels
{
    /// <summary>Qwen2.5-0.5B's architecture (hidden 896, 14/2 heads, intermediate 4864, q/k/v biases, tied embeddings), with a chosen vocabulary and depth.</summary>
    public static LlamaConfig Qwen25HalfB(int vocab, int layers) => new()
    {
        ModelType = "qwen2", VocabSize = vocab, HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = layers,
        NumAttentionHeads = 14, NumKeyValueHeads = 2, RopeTheta = 1_000_000, RmsNormEps = 1e-6, MaxPositionEmbeddings = 32768,
        TieWordEmbeddings = true, AttentionBias = true,
    };

    /// <summary>A figure of /proc/self/status in MB, e.g. "VmHWM" (peak RSS) or "VmRSS".</summary>
    public static double StatusMegabytes(string key)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        return double.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
    }
}
