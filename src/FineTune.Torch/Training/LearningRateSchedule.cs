using FineTune.Core.Pipeline;

namespace FineTune.Torch.Training;

/// <summary>
/// The learning rate of each optimizer step, with transformers' get_scheduler formulas (optimization.py): a LambdaLR
/// factor of the peak, evaluated at the 0-based step, since the Trainer steps its scheduler after each optimizer step.
/// So a warmup's first step has learning rate 0, and linear reaches 0 only at the step after the last.
/// </summary>
internal static class LearningRateSchedule
{
    /// <summary>transformers' get_warmup_steps: warmup_steps when positive, else ceil(total * warmup_ratio).</summary>
    public static int WarmupSteps(TrainSettings settings, int totalSteps) => settings.WarmupSteps > 0
        ? settings.WarmupSteps
        : (int)Math.Ceiling(totalSteps * settings.WarmupRatio);

    /// <summary>The learning rate of optimizer step <paramref name="step"/> (0-based) of a run's steps.</summary>
    public static double At(TrainSettings settings, int step, int totalSteps)
    {
        var warmup = WarmupSteps(settings, totalSteps);
        var minimum = settings.MinLrRatio ?? 0;
        if (settings.LrSchedulerType == "cosine_to_min_lr")
            return CosineToMinimumAtLastStep(settings.LearningRate, step, warmup, totalSteps, minimum);
        // LambdaLR: base_lr * factor.
        return settings.LearningRate * settings.LrSchedulerType switch
        {
            "constant" => 1.0,
            "constant_with_warmup" => step < warmup ? Warmup(step, warmup) : 1.0,
            "linear" => step < warmup
                ? Warmup(step, warmup)
                : Math.Max(0.0, (totalSteps - step) / (double)Math.Max(1, totalSteps - warmup)),
            "cosine" => step < warmup ? Warmup(step, warmup) : Math.Max(0.0, HalfCosine(step, warmup, totalSteps)),
            "cosine_with_min_lr" => step < warmup
                ? Warmup(step, warmup)
                : HalfCosine(step, warmup, totalSteps) * (1 - minimum) + minimum,
            var other => throw new ArgumentOutOfRangeException(nameof(settings), other, "unknown lr_scheduler_type"),
        };
    }

    private static double Warmup(int step, int warmup) => step / (double)Math.Max(1, warmup);

    /// <summary>0.5 (1 + cos(pi progress)): transformers' cosine with num_cycles 0.5.</summary>
    private static double HalfCosine(int step, int warmup, int totalSteps)
    {
        var progress = (step - warmup) / (double)Math.Max(1, totalSteps - warmup);
        return 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * progress));
    }

    /// <summary>
    /// The tool's original schedule, kept so pipelines written for it train as before: warmup starting at
    /// peak / warmup and reaching the peak on its last step, then a cosine whose floor is reached on the last step.
    /// Computed in the original's order of operations, so its rates, and the losses, are bit for bit the same.
    /// </summary>
    private static double CosineToMinimumAtLastStep(double peak, int step, int warmup, int totalSteps, double minimum)
    {
        if (step < warmup) return peak * (step + 1) / warmup;
        var decaySteps = Math.Max(1, totalSteps - warmup - 1);
        var progress = Math.Min(1.0, (step - warmup) / (double)decaySteps);
        var floor = peak * minimum;
        return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
