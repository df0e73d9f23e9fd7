using System.Text.Json.Nodes;
using ScottPlot;

namespace FineTune.Torch.Evaluation;

/// <summary>The train stage's metrics.jsonl: per logged step the loss and learning rate, and the validation
/// losses measured during training (lines with <c>eval_loss</c>), when there are any.</summary>
internal sealed record TrainingCurves(
    IReadOnlyList<(int Step, double Loss, double LearningRate)> Steps,
    IReadOnlyList<(int Step, double Loss)> Evaluations)
{
    public static TrainingCurves Read(string metricsPath)
    {
        var steps = new List<(int, double, double)>();
        var evaluations = new List<(int, double)>();
        if (!File.Exists(metricsPath)) return new(steps, evaluations);
        foreach (var line in File.ReadLines(metricsPath))
        {
            if (string.IsNullOrWhiteSpace(line) || JsonNode.Parse(line) is not JsonObject entry) continue;
            if (entry["step"] is not JsonValue stepValue) continue;
            var step = stepValue.GetValue<int>();
            if (entry["eval_loss"] is JsonValue evalLoss) evaluations.Add((step, evalLoss.GetValue<double>()));
            if (entry["loss"] is JsonValue loss && entry["lr"] is JsonValue lr)
                steps.Add((step, loss.GetValue<double>(), lr.GetValue<double>()));
        }
        return new(steps, evaluations);
    }
}

/// <summary>
/// The report's PNG plots, drawn with ScottPlot. Labels are ASCII so the plots need no CJK font; the same figures
/// give the same bytes.
/// </summary>
internal static class ReportPlots
{
    public const string LossFile = "loss.png";
    public const string LearningRateFile = "learning_rate.png";
    public const string ValidationLossFile = "validation_loss.png";
    public const string LengthsFile = "token_lengths.png";

    private const int Width = 800, Height = 450;

    /// <summary>TensorBoard's smoothing weight: each point is 0.9 of the previous smoothed value and 0.1 of itself.
    /// </summary>
    public const double SmoothingWeight = 0.9;

    /// <summary>Writes the plots the figures allow into <paramref name="directory"/>; returns their file names.
    /// </summary>
    public static List<string> Write(string directory, TrainingCurves curves, IReadOnlyList<int> trainLengths,
        IReadOnlyList<int> validationLengths)
    {
        var written = new List<string>();
        if (curves.Steps.Count > 0)
        {
            double[] steps = [.. curves.Steps.Select(s => (double)s.Step)];
            double[] losses = [.. curves.Steps.Select(s => s.Loss)];
            var plot = new Plot();
            var raw = plot.Add.Scatter(steps, losses);
            Style(raw, "loss", Colors.LightSteelBlue);
            var smooth = plot.Add.Scatter(steps, Smooth(losses, SmoothingWeight));
            Style(smooth, $"smoothed (EMA {SmoothingWeight})", Colors.Navy);
            if (curves.Evaluations.Count > 0)
            {
                var validation = plot.Add.Scatter(curves.Evaluations.Select(e => (double)e.Step).ToArray(),
                    curves.Evaluations.Select(e => e.Loss).ToArray());
                validation.LegendText = "validation loss";
                validation.Color = Colors.OrangeRed;
                validation.LineWidth = 2;
                validation.MarkerSize = 6;
            }
            plot.ShowLegend(Alignment.UpperRight);
            Save(plot, "Training loss", "optimizer step", "loss", directory, LossFile, written);

            plot = new Plot();
            Style(plot.Add.Scatter(steps, curves.Steps.Select(s => s.LearningRate).ToArray()), null, Colors.DarkGreen);
            Save(plot, "Learning rate", "optimizer step", "learning rate", directory, LearningRateFile, written);
        }
        if (curves.Evaluations.Count > 0)
        {
            var plot = new Plot();
            var validation = plot.Add.Scatter(curves.Evaluations.Select(e => (double)e.Step).ToArray(),
                curves.Evaluations.Select(e => e.Loss).ToArray());
            validation.Color = Colors.OrangeRed;
            validation.MarkerSize = 6;
            Save(plot, "Validation loss per evaluation", "optimizer step", "validation loss", directory,
                ValidationLossFile, written);
        }
        if (trainLengths.Count + validationLengths.Count > 0)
        {
            var plot = new Plot();
            var longest = Math.Max(trainLengths.DefaultIfEmpty(0).Max(), validationLengths.DefaultIfEmpty(0).Max());
            var binWidth = Math.Max(1, (int)Math.Ceiling((longest + 1) / 40.0));
            AddHistogram(plot, trainLengths, binWidth, "train", Colors.SteelBlue, 0);
            AddHistogram(plot, validationLengths, binWidth, "validation", Colors.OrangeRed, binWidth / 2.0);
            plot.ShowLegend(Alignment.UpperRight);
            plot.Axes.Margins(bottom: 0);
            Save(plot, $"Token length per example (bins of {binWidth})", "tokens", "examples", directory, LengthsFile,
                written);
        }
        return written;
    }

    /// <summary>TensorBoard's debiased exponential moving average (early points are not pulled towards 0).</summary>
    public static double[] Smooth(IReadOnlyList<double> values, double weight)
    {
        var smoothed = new double[values.Count];
        double last = 0;
        for (var i = 0; i < values.Count; i++)
        {
            last = last * weight + (1 - weight) * values[i];
            smoothed[i] = last / (1 - Math.Pow(weight, i + 1));
        }
        return smoothed;
    }

    /// <summary>Counts per bin [k * width, (k + 1) * width).</summary>
    public static int[] Histogram(IReadOnlyList<int> lengths, int binWidth)
    {
        var counts = new int[lengths.Count == 0 ? 0 : lengths.Max() / binWidth + 1];
        foreach (var length in lengths) counts[length / binWidth]++;
        return counts;
    }

    private static void AddHistogram(Plot plot, IReadOnlyList<int> lengths, int binWidth, string label, Color color,
        double shift)
    {
        if (lengths.Count == 0) return;
        var counts = Histogram(lengths, binWidth);
        var bars = plot.Add.Bars(Enumerable.Range(0, counts.Length).Select(k => k * binWidth + binWidth / 4.0 + shift)
            .ToArray(), counts.Select(c => (double)c).ToArray());
        foreach (var bar in bars.Bars)
        {
            bar.Size = binWidth / 2.0;
            bar.FillColor = color;
            bar.LineWidth = 0;
        }
        bars.LegendText = label;
    }

    private static void Style(ScottPlot.Plottables.Scatter scatter, string? label, Color color)
    {
        scatter.MarkerSize = 0;
        scatter.LineWidth = 1.5f;
        scatter.Color = color;
        if (label is not null) scatter.LegendText = label;
    }

    private static void Save(Plot plot, string title, string x, string y, string directory, string file,
        List<string> written)
    {
        plot.Title(title);
        plot.XLabel(x);
        plot.YLabel(y);
        plot.SavePng(Path.Combine(directory, file), Width, Height);
        written.Add(file);
    }
}
