using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using FineTune.Core.Pipeline;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;

namespace FineTune.Bench;

/// <summary>What the benchmarks share: the model shape they measure, the process's memory figures, and a child process
/// per measurement (so that one measurement's peak memory is not another's).</summary>
internal static class BenchModels
{
    /// <summary>Qwen2.5-0.5B's architecture (hidden 896, 14/2 heads, intermediate 4864, q/k/v biases, tied embeddings), with a chosen vocabulary and depth.</summary>
    public static LlamaConfig Qwen25HalfB(int vocab, int layers) => new()
    {
        ModelType = "qwen2", VocabSize = vocab, HiddenSize = 896, IntermediateSize = 4864, NumHiddenLayers = layers,
        NumAttentionHeads = 14, NumKeyValueHeads = 2, RopeTheta = 1_000_000, RmsNormEps = 1e-6, MaxPositionEmbeddings = 32768,
        TieWordEmbeddings = true, AttentionBias = true,
    };

    /// <summary>huanhuan-cpu.yaml's built-in model (hidden 256, 8/4 heads, intermediate 688), with a chosen vocabulary and depth.</summary>
    public static LlamaConfig CpuJobModel(int vocab, int layers) => TrainStage.BuiltinConfig(new BuiltinModelSettings
    {
        HiddenSize = 256, Layers = layers, Heads = 8, KvHeads = 4, IntermediateSize = 688,
    }, vocab);

    /// <summary>The median: the middle value, or the mean of the two middle ones.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2]
            : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    /// <summary>A figure of /proc/self/status in MB, e.g. "VmHWM" (peak RSS) or "VmRSS".</summary>
    public static double StatusMegabytes(string key)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        return double.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
    }

    /// <summary>
    /// Runs this benchmark program again with <paramref name="args"/>; the child prints its result as one JSON line
    /// (returned) and anything else, which is passed through indented. Null, said on stderr, when the child fails.
    /// </summary>
    public static T? RunChild<T>(string label, params string[] args) where T : class
    {
        // Under `dotnet run` the process is the apphost; under `dotnet FineTune.Bench.dll` it is dotnet itself.
        var process = Environment.ProcessPath!;
        var start = new ProcessStartInfo(process) { RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(process) == "dotnet")
            start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        T? result = null;
        while (child.StandardOutput.ReadLine() is { } line)
        {
            if (line.StartsWith('{')) result = JsonSerializer.Deserialize<T>(line);
            else Console.WriteLine("    " + line);
        }
        child.WaitForExit();
        if (child.ExitCode != 0 || result is null)
            Console.Error.WriteLine($"child ({label}) failed with exit code {child.ExitCode}");
        return result;
    }
}
