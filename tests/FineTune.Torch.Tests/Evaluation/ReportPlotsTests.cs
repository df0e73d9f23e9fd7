using FineTune.Torch.Evaluation;

namespace FineTune.Torch.Tests.Evaluation;

public sealed class ReportPlotsTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("ft-plots-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Smoothing_is_tensorboards_debiased_moving_average()
    {
        // s1 = 0.1 * 1 / (1 - 0.9) = 1; s2 = (0.9 * 0.1 + 0.1 * 2) / (1 - 0.81) = 0.29 / 0.19.
        var smoothed = ReportPlots.Smooth([1, 2], 0.9);
        Assert.Equal(1, smoothed[0], 12);
        Assert.Equal(0.29 / 0.19, smoothed[1], 12);
    }

    [Fact]
    public void Histogram_counts_lengths_per_bin()
    {
        Assert.Equal([2, 1, 1], ReportPlots.Histogram([0, 3, 4, 9], 4));
    }

    [Fact]
    public void Metrics_lines_give_training_and_validation_curves_and_the_same_figures_give_the_same_png()
    {
        var metrics = Path.Combine(_root, "metrics.jsonl");
        File.WriteAllLines(metrics,
        [
            """{"step": 1, "epoch": 0.1, "loss": 3.5, "lr": 0.001, "grad_norm": 1.0}""",
            """{"step": 2, "epoch": 0.2, "loss": 3.1, "lr": 0.002, "grad_norm": 1.0}""",
            """{"step": 2, "epoch": 0.2, "eval_loss": 3.3}""",
            """{"step": 3, "epoch": 0.3, "loss": 2.8, "lr": 0.001, "grad_norm": 1.0}""",
        ]);
        var curves = TrainingCurves.Read(metrics);
        Assert.Equal([(1, 3.5, 0.001), (2, 3.1, 0.002), (3, 2.8, 0.001)], curves.Steps);
        Assert.Equal([(2, 3.3)], curves.Evaluations);

        var first = Directory.CreateDirectory(Path.Combine(_root, "a")).FullName;
        var second = Directory.CreateDirectory(Path.Combine(_root, "b")).FullName;
        var written = ReportPlots.Write(first, curves, [10, 20, 20, 35], [12]);
        ReportPlots.Write(second, curves, [10, 20, 20, 35], [12]);

        Assert.Equal([ReportPlots.LossFile, ReportPlots.LearningRateFile, ReportPlots.ValidationLossFile,
            ReportPlots.LengthsFile], written);
        foreach (var file in written)
        {
            var bytes = File.ReadAllBytes(Path.Combine(first, file));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
            Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(second, file)));
        }
    }

    [Fact]
    public void Without_metrics_only_the_length_histogram_is_drawn()
    {
        var curves = TrainingCurves.Read(Path.Combine(_root, "missing.jsonl"));
        Assert.Equal([ReportPlots.LengthsFile], ReportPlots.Write(_root, curves, [3, 4], []));
        Assert.Empty(ReportPlots.Write(_root, curves, [], []));
    }
}
