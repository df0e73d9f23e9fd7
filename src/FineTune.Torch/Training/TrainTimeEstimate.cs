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
    /// run below peak), by the FlopCounter's count. float32: the train-loop benchmark's LoRA shape (r 8 on 4
    /// Qwen2.5-0.5B layers, 4 x 384) measured 0.46-0.70 on the 2-core development machine, the CPU job 0.56.
    /// bfloat16 on a CPU runs much further below its peak (which is about 4x float32's there): 0.42 on the LoRA shape,
    /// 0.16 on the CPU job's small model, whose products are too small for the bfloat16 kernels; 0.25 sits between.
    /// </summary>
    public static double ExpectedUtilisation(string dtype, string device) =>
        dtype == "bfloat16" && device.StartsWith("cpu", StringComparison.Ordinal) ? 0.25 : 0.5;

    public static double Seconds(double flops, double peakFlops, double utilisation)
        => flops / Math.Max(peakFlops * utilisation, 1);

    /// <summary>"5m07s (1.23e+15 FLOP at 50 % of the measured 210 GFLOP/s matmul peak)".</summary>
    public static string Describe(double flops, double peakFlops, double utilisation) => string.Create(
        CultureInfo.InvariantCulture,
        $"{Durations.Format(Seconds(flops, peakFlops, utilisation))} ({flops:0.00e+00} FLOP at {utilisation:P0} of " +
        $"the measured {peakFlops / 1e9:N0} GFLOP/s matmul peak)");
}
