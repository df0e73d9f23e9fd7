using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using static TorchSharp.torch;

namespace FineTune.Bench;

/// <summary>
/// The matrix products of a LoRA step on Qwen2.5-0.5B layers (4 x 384 tokens, vocabulary 32,768) one by one, each as
/// forward (x Wᵀ) and the backward product for the input (g W), in GFLOP/s: which shapes keep a step from the matmul
/// peak. Arguments: [float32|bfloat16] [rows (default 1536)] [head rows per chunk (default 512)].
/// </summary>
internal sealed class MatmulShapesBenchmark : IBenchmark
{
    public string Name => "matmul-shapes";
    public string Description => "GFLOP/s of each matrix product of the LoRA step (forward and input gradient)";

    public int Run(string[] args)
    {
        var dtype = args.Length > 0 && args[0] == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        var rows = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1536;
        var headRows = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 512;
        (string Name, int Rows, int In, int Out)[] shapes =
        [
            ("q_proj / o_proj", rows, 896, 896), ("k_proj / v_proj", rows, 896, 128),
            ("gate_proj / up_proj", rows, 896, 4864), ("down_proj", rows, 4864, 896),
            ("head chunk", headRows, 896, 32768),
        ];
        var results = new List<object>();
        foreach (var (name, m, k, n) in shapes)
        {
            using var scope = NewDisposeScope();
            var x = randn(m, k, dtype: dtype);
            var w = randn(n, k, dtype: dtype);
            var g = randn(m, n, dtype: dtype);
            var forward = Measure(() => nn.functional.linear(x, w), 2.0 * m * k * n);
            var backward = Measure(() => g.mm(w), 2.0 * m * k * n);
            Console.WriteLine($"{name,-20} [{m}, {k}] x [{k}, {n}]: forward {forward,6:F1} GFLOP/s, input gradient {backward,6:F1}");
            results.Add(new { name, m, k, n, forward_gflops = Math.Round(forward, 1), backward_gflops = Math.Round(backward, 1) });
        }
        Console.WriteLine(JsonSerializer.Serialize(new { benchmark = Name, dtype = dtype.ToString(), shapes = results }));
        return 0;
    }

    /// <summary>The best of repeated runs over about half a second, in GFLOP/s.</summary>
    private static double Measure(Func<Tensor> product, double flops)
    {
        product().Dispose();
        var best = double.MaxValue;
        var budget = Stopwatch.StartNew();
        while (budget.Elapsed.TotalSeconds < 0.5)
        {
            var clock = Stopwatch.StartNew();
            product().Dispose();
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return flops / best / 1e9;
    }
}
