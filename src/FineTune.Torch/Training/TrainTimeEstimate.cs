using System.Globalization;
using FineTune.Core;

namespace FineTune.Torch.Training;

/// <summary>
/// The one estimate of training time: the run's FLOPs at a share of the matmul peak measured on this device. The train
/// stage's plan and <c>validate --data</c> both print it.
/// </summary>
internal static class TrainTimeEstimate
{
    /// <summary>
    /// Share of the matmul peak a training step reaches in practice (attention, norms, the optimizer and the framework
    /// run below peak). The train-loop benchmark (LoRA r 8, Qwen2.5-0.5B shape cut to 4 layers, 4 x 384 tokens,
    /// float32) measured 0.46 by this count on the shared 2-core development machine.
    /// </summary>
    public const double ExpectedUtilisation = 0.5;

    public static double Seconds(double flops, double peakFlops)
        => flops / Math.Max(peakFlops * ExpectedUtilisation, 1);

    /// <summary>"5m07s (1.23e+15 FLOP at 50 % of the measured 210 GFLOP/s matmul peak)".</summary>
    public static string Describe(double flops, double peakFlops) => string.Create(CultureInfo.InvariantCulture,
        $"{Durations.Format(Seconds(flops, peakFlops))} ({flops:0.00e+00} FLOP at {ExpectedUtilisation:P0} of the " +
        $"measured {peakFlops / 1e9:N0} GFLOP/s matmul peak)");
}
