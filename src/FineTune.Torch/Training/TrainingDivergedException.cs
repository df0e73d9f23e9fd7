using System.Globalization;

namespace FineTune.Torch.Training;

/// <summary>
/// A step produced a loss or gradient norm that is NaN or infinite. Thrown before the optimizer step, so the weights
/// are those of the last finite step; the train stage turns it into a located error at learning_rate.
/// </summary>
internal sealed class TrainingDivergedException(int step, int totalSteps, double learningRate, string what)
    : Exception($"training diverged at step {step} of {totalSteps}: {what}")
{
    public int Step { get; } = step;
    public double LearningRate { get; } = learningRate;

    /// <summary>The message for people: where, at what learning rate, and what to try.</summary>
    public string Advice(string dtype) =>
        string.Create(CultureInfo.InvariantCulture, $"{Message} (learning rate {LearningRate:0.0##e+00}); nothing " +
            $"was committed. Try a lower learning_rate (for example {LearningRate / 3:0.0##e+00}), a longer " +
            $"warmup_ratio, or max_grad_norm: 1") + (dtype == "float32" ? "" : ", or dtype: float32");
}
