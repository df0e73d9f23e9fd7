using FineTune.Core;
using System.Globalization;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>How many optimizer steps a run takes and how many micro-batches each of them accumulates.</summary>
/// <param name="TotalSteps">Optimizer steps of the whole run (the length of the learning-rate schedule).</param>
/// <param name="MicroBatchesPerStep">Micro-batches accumulated into one step (the last step of an epoch may take
/// fewer).</param>
/// <param name="TotalMicroBatches">Micro-batches the run goes through, epoch after epoch.</param>
internal sealed record StepSchedule(int TotalSteps, int MicroBatchesPerStep, long TotalMicroBatches)
{
    /// <summary>
    /// transformers' Trainer (4.46 and later): the schedule has max(batches // accumulation, 1) steps per epoch,
    /// ceil(epochs · that) in all, or <paramref name="maxSteps"/> when positive; the loop groups each epoch's batches
    /// into steps of <paramref name="accumulation"/>, the leftover batches of an epoch making one shorter step of
    /// their own, and stops when the schedule's steps are done. The tutorial's 3,729 records at batch 4 (933
    /// batches) with accumulation 4 for 3 epochs: 699 steps; an epoch is 233 steps of 4 batches and one of 1, so the
    /// third epoch stops after 231 steps, 924 of its batches.
    /// </summary>
    public static StepSchedule For(int batchesPerEpoch, int accumulation, double epochs, int maxSteps = -1)
    {
        var perStep = Math.Min(accumulation, batchesPerEpoch);
        var steps = maxSteps > 0
            ? maxSteps
            : (int)Math.Ceiling(epochs * Math.Max(batchesPerEpoch / accumulation, 1) - 1e-9);
        var stepsPerEpoch = StepsPerEpoch(batchesPerEpoch, perStep);
        var (fullEpochs, stepsInLast) = Math.DivRem(steps, stepsPerEpoch);
        var microBatches = (long)fullEpochs * batchesPerEpoch
            + Math.Min((long)stepsInLast * perStep, batchesPerEpoch);
        return new StepSchedule(steps, perStep, microBatches);
    }

    /// <summary>Steps the loop takes per epoch: the full ones and the shorter one of the leftover batches.</summary>
    private static int StepsPerEpoch(int batchesPerEpoch, int perStep) =>
        batchesPerEpoch == 0 ? 1 : (batchesPerEpoch + perStep - 1) / perStep;
}

/// <summary>
/// What a run is about to do, printed before the first step and kept in the train summary: the model, the method,
/// what is trained, how much data, how many steps, and a time estimate from the FLOP count and the matmul speed
/// measured on this device.
/// </summary>
internal sealed record TrainPlan(
    string Model, string Architecture, long ModelParameters, string Method,
    long TrainableParameters, long AllParameters, int Examples, double Epochs, int BatchSize, int Accumulation,
    StepSchedule Schedule, int BatchesPerEpoch, long TokensPerEpoch, double TrainingFlops, double PeakFlops,
    string Device, string Dtype, string Allocator = "unknown")
{
    public double TrainableShare => AllParameters == 0 ? 0 : (double)TrainableParameters / AllParameters;

    private double Utilisation => TrainTimeEstimate.ExpectedUtilisation(Dtype, Device);

    public double EstimatedSeconds => TrainTimeEstimate.Seconds(TrainingFlops, PeakFlops, Utilisation);

    /// <summary>One readable line per figure, for the stage log.</summary>
    public IEnumerable<string> Lines()
    {
        var c = CultureInfo.InvariantCulture;
        yield return string.Create(c,
            $"plan: model {Model} ({Architecture}), {ModelParameters:N0} parameters, {Dtype} on {Device}, " +
            $"allocator {Allocator}");
        yield return string.Create(c,
            $"plan: method {Method}, trainable {TrainableParameters:N0} of {AllParameters:N0} " +
            $"({TrainableShare * 100:0.00} %)");
        yield return string.Create(c,
            $"plan: {Examples:N0} examples, {TokensPerEpoch:N0} tokens per epoch, {Epochs:0.##} epoch(s)");
        yield return string.Create(c,
            $"plan: {Schedule.TotalSteps:N0} optimizer steps of {BatchSize} x {Accumulation} examples " +
            $"({BatchesPerEpoch:N0} batches per epoch)");
        yield return "plan: estimated time " + TrainTimeEstimate.Describe(TrainingFlops, PeakFlops, Utilisation);
    }

    /// <summary>
    /// The plan's figures under plan_* keys of the stage summary (the lock file, the run summary, --json); the time
    /// estimate under the timings.
    /// </summary>
    public void AddTo(IDictionary<string, object> summary, IDictionary<string, object> timings)
    {
        summary["plan_model"] = $"{Model} ({Architecture})";
        summary["plan_model_params"] = ModelParameters;
        summary["plan_method"] = Method;
        summary["plan_trainable_params"] = TrainableParameters;
        summary["plan_trainable_share"] = Math.Round(TrainableShare, 6);
        summary["plan_examples"] = Examples;
        summary["plan_epochs"] = Epochs;
        summary["plan_steps"] = Schedule.TotalSteps;
        summary["plan_tokens_per_epoch"] = TokensPerEpoch;
        summary["plan_flops"] = Math.Round(TrainingFlops);
        // From a peak measured on this machine now: it differs between identical runs.
        timings["plan_estimated_s"] = Math.Round(EstimatedSeconds, 1);
        timings["allocator"] = Allocator;
    }

    /// <summary>
    /// The plan of training <paramref name="model"/> on <paramref name="data"/> in epochs that look like
    /// <paramref name="batches"/> (per batch its rows, per row the examples packed into it: one without packing). The
    /// FLOPs are summed over the first epoch's batches (their padded lengths) and scaled to the micro-batches the
    /// schedule runs.
    /// </summary>
    public static TrainPlan For(LlamaForCausalLM model, TokenizedDataset data, IReadOnlyList<int[][]> batches,
        TrainSettings settings, Device device, double peakFlops)
    {
        var schedule = StepSchedule.For(batches.Count, settings.GradientAccumulation, settings.Epochs,
            settings.MaxSteps);
        var counter = FlopCounter.Of(model);
        double epochFlops = 0;
        long epochTokens = 0;
        var examples = 0;
        foreach (var batch in batches)
        {
            var padded = batch.Max(row => row.Sum(example => data.Length(example) - 1));
            long tokens = 0;
            var labels = 0;
            foreach (var example in batch.SelectMany(row => row))
            {
                examples++;
                tokens += data.Length(example) - 1;
                var exampleLabels = data.Labels(example);
                for (var t = 1; t < exampleLabels.Length; t++)
                    if (exampleLabels[t] != TokenizedDataset.IgnoreLabel) labels++;
            }
            epochTokens += tokens;
            epochFlops += counter.TrainingFlops(tokens, padded, labels);
        }
        var named = model.named_parameters().ToList();
        var all = named.Sum(p => p.parameter.numel());
        var adapters = named.Where(p => p.name.Contains(".lora_", StringComparison.Ordinal)).Sum(p
            => p.parameter.numel());
        var config = model.Config;
        var architecture = string.Create(CultureInfo.InvariantCulture,
            $"{config.ModelType}, {config.HiddenSize} hidden, {config.NumHiddenLayers} layers, " +
            $"{config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, vocab {config.VocabSize:N0}");
        return new TrainPlan(
            Model: settings.Model, Architecture: architecture, ModelParameters: all - adapters, Method: settings.Method,
            TrainableParameters: named.Where(p => p.parameter.requires_grad).Sum(p => p.parameter.numel()),
                AllParameters: all,
            Examples: examples,
            Epochs: settings.MaxSteps > 0 && batches.Count > 0
                ? Math.Round(schedule.TotalMicroBatches / (double)batches.Count, 4) : settings.Epochs,
            BatchSize: settings.BatchSize, Accumulation: settings.GradientAccumulation, Schedule: schedule,
            BatchesPerEpoch: batches.Count,
            TokensPerEpoch: epochTokens,
            TrainingFlops: batches.Count == 0 ? 0 : epochFlops * schedule.TotalMicroBatches / batches.Count,
            PeakFlops: peakFlops, Device: device.type == TorchSharp.DeviceType.CUDA ? "cuda" : "cpu",
                Dtype: Trainer.DtypeName(settings.Dtype, device), Allocator: NativeAllocator.ThisProcess());
    }
}
