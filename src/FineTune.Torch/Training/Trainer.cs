using FineTune.Core;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Distributed;
using FineTune.Torch.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Training;

/// <summary>
/// What a training run achieved; the train stage copies it into its summary. <see cref="FinalLoss"/> is the mean over
/// the last 5 % of steps, since a single step's loss depends on which length group its batch came from.
/// </summary>
internal sealed record TrainResult(
    int Steps, double Epochs, long Tokens, long TrainedTokens, double FirstLoss, double FinalLoss,
    double TokensPerSecond, double Mfu, double DurationSeconds, long Parameters, bool Resumed,
        double? PackingEfficiency = null);

/// <summary>
/// Fine-tuning of a causal LM as transformers' Trainer runs it: AdamW (decay groups, betas, epsilon), its
/// learning-rate schedules, gradient accumulation, gradient clipping; length-grouped right-padded batches; loss =
/// mean cross-entropy over every label token of an optimizer step. Reads top to bottom: plan, resume, loop (step,
/// log, checkpoint), finish.
/// </summary>
internal sealed class Trainer
{
    private readonly LlamaForCausalLM _model;
    private readonly TokenizedDataset _data;
    private readonly TrainSettings _settings;
    private readonly Device _device;
    private readonly IStageLog _log;

    /// <summary>Where checkpoints go (a stage's WorkDirectory); null disables checkpoints.</summary>
    public string? CheckpointDirectory { get; init; }

    /// <summary>Identifies the run a checkpoint belongs to; a checkpoint with another key is ignored.</summary>
    public string CheckpointKey { get; init; } = "";

    /// <summary>metrics.jsonl path, one JSON line per logged step; null disables it.</summary>
    public string? MetricsPath { get; init; }

    /// <summary>
    /// Where the per-step timings (tokens/s, elapsed seconds, MFU) go, one JSON line per logged step; null drops them.
    /// They vary from run to run, so they are kept out of <see cref="MetricsPath"/>, which is a hashed stage output.
    /// </summary>
    public string? TimingsPath { get; init; }

    /// <summary>
    /// Stops after this many optimizer steps without changing the schedule (tests and experiments); null runs the
    /// whole plan. The max_steps setting, by contrast, is the schedule's length.
    /// </summary>
    public int? StopAfterSteps { get; init; }

    /// <summary>
    /// Tokens per packed row (tokenize.max_length) under train.packing; null: the longest example's inputs.
    /// </summary>
    public int? PackLength { get; init; }

    /// <summary>
    /// The validation loss of the model as it is now (the evaluate stage's definition); called every eval_steps
    /// optimizer steps. Null disables evaluation during training.
    /// </summary>
    public Func<double?>? MeasureValidationLoss { get; init; }

    /// <summary>(optimizer step, validation loss) of every evaluation during training, in order.</summary>
    public List<(int Step, double Loss)> EvalLosses { get; } = [];

    /// Data-parallel training over several processes (null: this process trains alone). Batches are then global,
    /// of world size x batch_size rows, this rank training its share; only rank 0 writes checkpoints and metrics.
    /// </summary>
    public DataParallel? Parallel { get; init; }

    private bool Writes => Parallel is null || Parallel.IsLeader;

    /// <summary>Loss of every optimizer step, in order (for tests and experiments).</summary>
    public List<double> Losses { get; } = [];

    /// <summary>
    /// What the run does (model, trainable parameters, steps, estimate); set when <see cref="Train"/> starts.
    /// </summary>
    public TrainPlan? Plan { get; private set; }

    public Trainer(LlamaForCausalLM model, TokenizedDataset data, TrainSettings settings, Device device, IStageLog log)
    {
        _model = model;
        _data = data;
        _settings = settings;
        _device = device;
        _log = log;
        // Frozen parameters (a LoRA base) are neither optimised nor given float32 masters.
        var named = _model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        _mixedPrecision = named.Any(p => p.parameter.dtype != ScalarType.Float32);
        _trained = named.ToDictionary(p => p.name, p => _mixedPrecision
            ? new Parameter(p.parameter.detach().to(ScalarType.Float32).clone(), requires_grad: true)
            : p.parameter, StringComparer.Ordinal);
        _modelParameters = named.ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        _model.GradientCheckpointing = settings.GradientCheckpointing;
    }

    // Mixed precision: a bfloat16 model computes forward and backward fast, while AdamW keeps float32 master weights
    // and moments. Pure-bf16 updates smaller than 2^-8 of a weight vanish, which stalls training once the learning
    // rate decays. In float32, the masters are the model's own parameters.
    private readonly bool _mixedPrecision;
    private readonly Dictionary<string, Parameter> _trained;
    private readonly Dictionary<string, Parameter> _modelParameters;

    /// <summary>
    /// The trained weights by Hugging Face key: float32 masters under mixed precision, else the model's.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor> Weights() => _mixedPrecision
        ? _trained.ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value, StringComparer.Ordinal)
        : _model.state_dict();

    private void CopyGradientsToMasters()
    {
        if (!_mixedPrecision) return;
        foreach (var (name, master) in _trained)
        {
            if (_modelParameters[name].grad is not { } grad) continue;
            if (master.grad is { } existing) existing.copy_(grad);
            else master.grad = grad.to(ScalarType.Float32).DetachFromDisposeScope();
        }
    }

    private void CopyMastersToModel()
    {
        if (!_mixedPrecision) return;
        using var noGrad = no_grad();
        foreach (var (name, master) in _trained) _modelParameters[name].copy_(master);
    }

    public TrainResult Train(CancellationToken cancellationToken)
    {
        var firstPlan = EpochPlan(0);
        var peakFlops = FlopCounter.MeasureMatmulFlops(_device, ScalarTypeOf(_settings.Dtype, _device));
        Plan = TrainPlan.For(_model, _data, firstPlan, _settings, _device, peakFlops);
        foreach (var line in Plan.Lines()) _log.Info(line);
        if (Parallel is not null)
            _log.Info($"data-parallel over {Parallel.WorldSize} ranks ({Parallel.Backend}): each optimizer step's " +
                $"batches are global ones of {Parallel.WorldSize} x {_settings.BatchSize} rows, one share per rank");
        var batchesPerEpoch = Plan.BatchesPerEpoch;
        if (batchesPerEpoch == 0)
            throw new InvalidOperationException("the training set has no example of two tokens or more");
        var totalMicroBatches = Plan.Schedule.TotalMicroBatches;
        var accumulation = Plan.Schedule.MicroBatchesPerStep;
        var totalSteps = Plan.Schedule.TotalSteps;
        if (StopAfterSteps is { } max) totalSteps = Math.Min(totalSteps, max);

        var optimizer = NewOptimizer();
        var parameters = _trained.Values.ToList();
        var state = new Position(0, 0, 0, 0, 0, 0, 0, 0);
        var resumed = TryResume(optimizer, ref state);
        Parallel?.VerifySameStart(_trained.Select(kv => (kv.Key, (Tensor)kv.Value)), $"step {state.Step}");
        var flopsPerToken = FlopCounter.Of(_model);

        using var metrics = MetricsPath is null || !Writes ? null : new StreamWriter(MetricsPath, append: resumed);
        using var timings = TimingsPath is null || !Writes ? null : new StreamWriter(TimingsPath, append: true);
        var clock = Stopwatch.StartNew();
        var elapsedBefore = state.ElapsedSeconds;
        long tokens = state.Tokens, trainedTokens = state.TrainedTokens, microBatch = state.MicroBatch;
        long windowTokens = 0;
        double windowFlops = 0, totalFlops = 0, windowLoss = state.WindowLoss;
        var windowSteps = state.WindowSteps;
        var windowEvalSeconds = 0.0;
        var windowClock = Stopwatch.StartNew();
        var sinceCheckpoint = Stopwatch.StartNew();
        double firstLoss = state.FirstLoss, loss = double.NaN;
        var plan = firstPlan;
        var packingEfficiency = _settings.Packing ? PackingEfficiency(firstPlan) : (double?)null;
        if (packingEfficiency is { } efficiency)
            _log.Info($"packing: {firstPlan.Sum(b => b.Sum(r => r.Length)):N0} examples in " +
                $"{firstPlan.Sum(b => b.Length):N0} rows of "
                + $"{RowLength} tokens, packing efficiency {efficiency:P1}");
        var planEpoch = 0L;
        _model.train();

        try
        {
            for (var step = state.Step; step < totalSteps; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var learningRate = LearningRateAt(step, totalSteps);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = learningRate;

                // Dropout draws from a generator seeded per step, so a resumed run draws what the uninterrupted one
                // would.
                manual_seed(_settings.Seed * 1_000_003L + step);
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                if (_mixedPrecision) _model.zero_grad();
                var microBatches = new List<int[][]>();
                // A step ends at its epoch's end, however few batches it has then (transformers' Trainer).
                for (var i = 0; i < accumulation && microBatch < totalMicroBatches
                    && (i == 0 || microBatch % batchesPerEpoch != 0); i++, microBatch++)
                {
                    var epoch = microBatch / batchesPerEpoch;
                    if (epoch != planEpoch) (plan, planEpoch) = (EpochPlan((int)epoch), epoch);
                    microBatches.Add(plan[(int)(microBatch % batchesPerEpoch)]);
                }
                var stepLabelTokens = microBatches.Sum(b => b.Sum(r => r.Sum(CountLabels)));
                var lossSum = 0.0;
                var microBatchIndex = microBatch - microBatches.Count;
                long stepTokens = 0, stepLabels = 0;
                double stepFlops = 0;
                foreach (var globalRows in microBatches)
                {
                    var rows = Parallel?.ShareOf(globalRows, _settings.BatchSize) ?? globalRows;
                    if (rows.Length == 0) { microBatchIndex++; continue; }
                    // Dropout masks are a function of the run's seed and the micro-batch, so a resumed run draws them
                    // again.
                    SeededDropout.StartStream(_settings.Seed, microBatchIndex++);
                    var batch = _settings.Packing ? MakePackedBatch(rows) : MakeBatch(rows.Select(r => r[0]).ToArray());
                    if (batch.LabelCount == 0) continue;
                    var hidden = _model.Hidden(batch.InputIds, positionIds: batch.PositionIds,
                        documentIds: batch.DocumentIds);
                    // The head runs only where a label is: over a 50k vocabulary it would otherwise dominate the step.
                    var trained = hidden.reshape(-1, hidden.shape[^1]).index_select(0, batch.Positions);
                    var batchLoss = ChunkedCrossEntropy.Sum(_model, trained, batch.Targets) / stepLabelTokens;
                    batchLoss.backward();
                    lossSum += batchLoss.item<float>();
                    stepTokens += batch.TokenCount;
                    stepLabels += batch.LabelCount;
                    stepFlops += flopsPerToken.TrainingFlops(batch.TokenCount, batch.PaddedLength, batch.LabelCount);
                }
                CopyGradientsToMasters();
                if (Parallel is not null)
                {
                    double[] figures = [lossSum, stepTokens, stepLabels, stepFlops / Parallel.WorldSize];
                    Parallel.SumGradients(parameters, figures);
                    (lossSum, stepTokens, stepLabels, stepFlops) = (figures[0], (long)Math.Round(figures[1]),
                        (long)Math.Round(figures[2]), figures[3]);
                }
                tokens += stepTokens;
                windowTokens += stepTokens;
                trainedTokens += stepLabels;
                windowFlops += stepFlops;
                totalFlops += stepFlops;
                var gradNorm = _settings.MaxGradNorm > 0
                    ? nn.utils.clip_grad_norm_(parameters, _settings.MaxGradNorm)
                    : GradNorm(parameters);
                // Before the step: a NaN would otherwise reach the weights, and every later step with them.
                if (!double.IsFinite(lossSum) || !double.IsFinite(gradNorm))
                    throw new TrainingDivergedException(step + 1, totalSteps, learningRate,
                        !double.IsFinite(lossSum) ? $"the loss is {lossSum}" : $"the gradient norm is {gradNorm}");
                optimizer.step();
                CopyMastersToModel();

                loss = lossSum;
                Losses.Add(loss);
                if (step == 0) firstLoss = loss;
                // Batches are grouped by length, so one step's loss swings with the kind of example it holds
                // (memorised greetings vs long lines): logs show the mean since the last log, as transformers does.
                windowLoss += loss;
                windowSteps++;
                var done = step + 1;
                var epochs = microBatch / (double)batchesPerEpoch;
                if (done % _settings.LogEvery == 0 || done == totalSteps || done == 1)
                {
                    var seconds = windowClock.Elapsed.TotalSeconds - windowEvalSeconds;
                    var tokensPerSecond = windowTokens / Math.Max(seconds, 1e-9);
                    var elapsed = elapsedBefore + clock.Elapsed.TotalSeconds;
                    var meanLoss = windowLoss / windowSteps;
                    _log.Progress(new StageProgress(done, totalSteps, "step",
                        $"loss {meanLoss:F3} lr {learningRate:0.0e+00} {tokensPerSecond:N0} tok/s"));
                    metrics?.WriteLine(JsonSerializer.Serialize(new
                    {
                        step = done, epoch = Math.Round(epochs, 4), loss = Math.Round(meanLoss, 5), lr = learningRate,
                        grad_norm = Math.Round(gradNorm, 5), tokens,
                    }));
                    metrics?.Flush();
                    timings?.WriteLine(JsonSerializer.Serialize(new
                    {
                        step = done, tokens_per_s = Math.Round(tokensPerSecond, 1), elapsed_s = Math.Round(elapsed, 2),
                        mfu = Math.Round(windowFlops / Math.Max(seconds, 1e-9) / peakFlops, 4),
                    }));
                    timings?.Flush();
                    windowTokens = 0;
                    windowFlops = 0;
                    windowLoss = 0;
                    windowSteps = 0;
                    windowEvalSeconds = 0;
                    windowClock.Restart();
                }
                if (_settings.EvalSteps > 0 && done % _settings.EvalSteps == 0 && MeasureValidationLoss is { } measure)
                {
                    var evalClock = Stopwatch.StartNew();
                    var evalLoss = measure();
                    _model.train();
                    windowEvalSeconds += evalClock.Elapsed.TotalSeconds;
                    if (evalLoss is { } value)
                    {
                        EvalLosses.Add((done, value));
                        _log.Info($"step {done}: eval_loss {value:F4}");
                        metrics?.WriteLine(JsonSerializer.Serialize(new
                        {
                            step = done, epoch = Math.Round(epochs, 4), eval_loss = Math.Round(value, 5),
                        }));
                        metrics?.Flush();
                    }
                }
                state = new Position(done, microBatch, tokens, trainedTokens, firstLoss, elapsedBefore
                    + clock.Elapsed.TotalSeconds, windowLoss, windowSteps);
                var due = _settings.CheckpointEvery > 0 ? done % _settings.CheckpointEvery == 0
                    : sinceCheckpoint.Elapsed >= AutomaticCheckpointInterval;
                if (due && done < totalSteps)
                {
                    SaveCheckpoint(optimizer, state);
                    sinceCheckpoint.Restart();
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (state.Step > 0)
            {
                SaveCheckpoint(optimizer, state);
                _log.Info($"cancelled: checkpoint at step {state.Step} written; run again to resume");
            }
            throw;
        }

        var duration = clock.Elapsed.TotalSeconds;
        var totalDuration = elapsedBefore + duration;
        // Measured again at the end: a peak measured while the machine was busy would make MFU exceed 100 %.
        peakFlops = Math.Max(peakFlops, FlopCounter.MeasureMatmulFlops(_device, ScalarTypeOf(_settings.Dtype,
            _device)));
        return new TrainResult(
            Steps: state.Step,
            Epochs: Math.Round(microBatch / (double)batchesPerEpoch, 4),
            Tokens: tokens,
            TrainedTokens: trainedTokens,
            FirstLoss: firstLoss,
            FinalLoss: Losses.Count == 0 ? loss : Losses.TakeLast(Math.Max(1, totalSteps / 20)).Average(),
            TokensPerSecond: Math.Round(tokens / Math.Max(totalDuration, 1e-9), 1),
            Mfu: Math.Round(totalFlops / Math.Max(duration, 1e-9) / peakFlops, 4),
            DurationSeconds: Math.Round(totalDuration, 2),
            Parameters: _model.parameters().Sum(p => p.numel()),
            Resumed: resumed,
            PackingEfficiency: packingEfficiency);
    }

    /// <summary>The learning rate of 0-based optimizer step <paramref name="step"/> (LearningRateSchedule).</summary>
    public double LearningRateAt(int step, int totalSteps) => LearningRateSchedule.At(_settings, step, totalSteps);

    /// <summary>
    /// The training dtype. auto is bfloat16 (weights held in bfloat16, float32 masters or adapters, loss in float32)
    /// on a GPU and on a CPU with native bfloat16 dot products (avx512_bf16 or AMX, <see cref="CpuFeatures"/>), where
    /// it is fast (README "Speed on CPU" has its loss against float32's); float32 on other CPUs, where bfloat16
    /// would be slower. No device counts as the CPU.
    /// </summary>
    public static ScalarType ScalarTypeOf(string dtype, Device? device = null) =>
        ScalarTypeOf(dtype, device, CpuFeatures.ThisCpuHasBfloat16Compute() == true);

    /// <summary><see cref="ScalarTypeOf(string, Device?)"/> with the CPU's bfloat16 support given (tests).</summary>
    public static ScalarType ScalarTypeOf(string dtype, Device? device, bool cpuHasBfloat16Compute) => dtype switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "auto" when device?.type == DeviceType.CUDA || cpuHasBfloat16Compute => ScalarType.BFloat16,
        _ => ScalarType.Float32,
    };

    /// <summary>The dtype name <see cref="ScalarTypeOf"/> resolves to (auto made concrete).</summary>
    public static string DtypeName(string dtype, Device? device) =>
        ScalarTypeOf(dtype, device) == ScalarType.BFloat16 ? "bfloat16" : "float32";

    /// <summary>
    /// AdamW as transformers' Trainer builds it: two groups, decayed (see WeightDecay.Applies) and not, each with the
    /// betas, epsilon and learning rate of the settings.
    /// </summary>
    private AdamW NewOptimizer()
    {
        var decayed = _trained.Where(p => WeightDecay.Applies(p.Key)).Select(p => p.Value).ToList();
        var kept = _trained.Where(p => !WeightDecay.Applies(p.Key)).Select(p => p.Value).ToList();
        AdamW.Options Options(double weightDecay) => new()
        {
            LearningRate = _settings.LearningRate, beta1 = _settings.AdamBeta1, beta2 = _settings.AdamBeta2,
            eps = _settings.AdamEpsilon, weight_decay = weightDecay,
        };
        var groups = new List<AdamW.ParamGroup>
        {
            new(decayed, Options(_settings.WeightDecay)),
            new(kept, Options(0)),
        };
        return optim.AdamW(groups, _settings.LearningRate, beta1: _settings.AdamBeta1, beta2: _settings.AdamBeta2,
            eps: _settings.AdamEpsilon, weight_decay: _settings.WeightDecay);
    }

    private int CountLabels(int example)
    {
        var labels = _data.Labels(example);
        var count = 0;
        for (var t = 1; t < labels.Length; t++) if (labels[t] != TokenizedDataset.IgnoreLabel) count++;
        return count;
    }

    private sealed record Batch(Tensor InputIds, Tensor Positions, Tensor Targets, long TokenCount, int LabelCount,
        int PaddedLength,
        Tensor? PositionIds = null, Tensor? DocumentIds = null);

    /// <summary>
    /// An epoch's micro-batches, each a list of rows, each row the examples it holds (one unless packing).
    /// </summary>
    private IReadOnlyList<int[][]> EpochPlan(int epoch) => _settings.Packing
        ? Batching.PackedEpochBatches(_data, RowLength, GlobalBatchSize, _settings.Seed, epoch)
        : Batching.EpochBatches(_data, GlobalBatchSize, _settings.Seed, epoch).Select(b
            => b.Select(e => new[] { e }).ToArray()).ToList();

    private int GlobalBatchSize => _settings.BatchSize * (Parallel?.WorldSize ?? 1);

    private int? _rowLength;
    private int RowLength => _rowLength ??= PackLength
        ?? Enumerable.Range(0, _data.Count).Select(e => _data.Length(e) - 1).DefaultIfEmpty(1).Max();

    /// <summary>
    /// Real tokens / (rows x row length) of a packed epoch: the share of the rows' room that holds examples.
    /// </summary>
    private double PackingEfficiency(IReadOnlyList<int[][]> plan)
    {
        var rows = plan.Sum(b => b.Length);
        var tokens = plan.Sum(b => b.Sum(r => r.Sum(e => (long)_data.Length(e) - 1)));
        return rows == 0 ? 0 : Math.Round(tokens / ((double)rows * RowLength), 4);
    }

    /// <summary>
    /// Packed rows: each example's inputs follow the previous one's with positions restarting at 0 and their own
    /// document id, so attention stays inside the example (see <see cref="LlamaForCausalLM.Hidden"/>); rows are
    /// right-padded to the longest, the padding a document of its own that no real token sees.
    /// </summary>
    private Batch MakePackedBatch(int[][] rows)
    {
        var length = PaddedLength(rows.Max(r => r.Sum(e => _data.Length(e) - 1)));
        var inputIds = new long[rows.Length * length];
        var positionIds = new long[rows.Length * length];
        var documentIds = new long[rows.Length * length];
        Array.Fill(documentIds, -1L);
        var positions = new List<long>();
        var targets = new List<long>();
        long tokenCount = 0;
        for (var r = 0; r < rows.Length; r++)
        {
            var offset = r * length;
            for (var d = 0; d < rows[r].Length; d++)
            {
                var ids = _data.Ids(rows[r][d]);
                var labels = _data.Labels(rows[r][d]);
                for (var t = 0; t < ids.Length - 1; t++, offset++)
                {
                    inputIds[offset] = ids[t];
                    positionIds[offset] = t;
                    documentIds[offset] = d;
                    if (labels[t + 1] == TokenizedDataset.IgnoreLabel) continue;
                    positions.Add(offset);
                    targets.Add(labels[t + 1]);
                }
                tokenCount += ids.Length - 1;
            }
        }
        long[] shape = [rows.Length, length];
        return new Batch(
            tensor(inputIds, shape, ScalarType.Int64).to(_device),
            tensor(positions.ToArray(), ScalarType.Int64).to(_device),
            tensor(targets.ToArray(), ScalarType.Int64).to(_device),
            tokenCount, targets.Count, length,
            tensor(positionIds, shape, ScalarType.Int64).to(_device),
            tensor(documentIds, shape, ScalarType.Int64).to(_device));
    }

    /// <summary>
    /// <paramref name="tokens"/> rounded up to train.pad_to_multiple_of; its default 0 is 16 for a model computing in
    /// bfloat16 (oneDNN builds a kernel for every new shape, and the batch lengths of a run take hundreds of values),
    /// else 1.
    /// </summary>
    internal int PaddedLength(int tokens)
    {
        var multiple = _settings.PadToMultipleOf > 0 ? _settings.PadToMultipleOf
            : _model.HeadWeight.dtype is ScalarType.BFloat16 or ScalarType.Float16 ? 16 : 1;
        return (tokens + multiple - 1) / multiple * multiple;
    }

    /// <summary>
    /// Right-padded inputs (the last token of each example is dropped: it predicts nothing), and the flat positions
    /// whose next token carries a label, with those labels. Padding needs no mask: under causal attention it comes
    /// after every real token and never gets a label.
    /// </summary>
    private Batch MakeBatch(int[] examples)
    {
        var length = PaddedLength(examples.Max(e => _data.Length(e)) - 1);
        var inputIds = new long[examples.Length * length];
        var positions = new List<long>();
        var targets = new List<long>();
        long tokenCount = 0;
        for (var b = 0; b < examples.Length; b++)
        {
            var ids = _data.Ids(examples[b]);
            var labels = _data.Labels(examples[b]);
            for (var t = 0; t < ids.Length - 1; t++)
            {
                inputIds[b * length + t] = ids[t];
                if (labels[t + 1] == TokenizedDataset.IgnoreLabel) continue;
                positions.Add(b * length + t);
                targets.Add(labels[t + 1]);
            }
            tokenCount += ids.Length - 1;
        }
        return new Batch(
            tensor(inputIds, [examples.Length, length], ScalarType.Int64).to(_device),
            tensor(positions.ToArray(), ScalarType.Int64).to(_device),
            tensor(targets.ToArray(), ScalarType.Int64).to(_device),
            tokenCount, targets.Count, length);
    }

    private static double GradNorm(IEnumerable<Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var squares = parameters.Where(p => p.grad is not null).Select(p
            => p.grad!.to(ScalarType.Float32).pow(2).sum()).ToList();
        return squares.Count == 0 ? 0 : Math.Sqrt(stack(squares).sum().item<float>());
    }

    // ---- checkpoints: see TrainingCheckpoint ----

    private sealed record Position(int Step, long MicroBatch, long Tokens, long TrainedTokens, double FirstLoss,
        double ElapsedSeconds, double WindowLoss, int WindowSteps);

    /// <summary>
    /// With checkpoint_every 0, a checkpoint is written once this much time has passed since the last one, so a crash
    /// loses at most about this much training (plus one step).
    /// </summary>
    public static readonly TimeSpan AutomaticCheckpointInterval = TimeSpan.FromMinutes(10);

    private void SaveCheckpoint(AdamW optimizer, Position position)
    {
        if (CheckpointDirectory is null || !Writes) return;
        TrainingCheckpoint.Save(CheckpointDirectory, Weights(), optimizer,
            new TrainingCheckpoint.State(CheckpointKey, _settings.Seed,
            position.Step, position.MicroBatch, position.Tokens, position.TrainedTokens, position.FirstLoss,
                position.ElapsedSeconds, position.WindowLoss, position.WindowSteps), MetricsPath);
    }

    private static FineTuneException CorruptCheckpoint(string folder, string why) =>
        new(DiagnosticCodes.CorruptCheckpoint, $"the checkpoint of the interrupted training in {folder} cannot be " +
            $"read ({why}); run again with --restart to discard it and train from the start", ExitCodes.StageFailed);

    private bool TryResume(AdamW optimizer, ref Position position)
    {
        if (CheckpointDirectory is null || !TrainingCheckpoint.Exists(CheckpointDirectory)) return false;
        var folder = TrainingCheckpoint.FolderIn(CheckpointDirectory);
        var saved = TrainingCheckpoint.TryReadState(CheckpointDirectory)
            ?? throw CorruptCheckpoint(folder, "its state.json cannot be read");
        if (saved.Key != CheckpointKey || saved.Seed != _settings.Seed)
        {
            _log.Warning($"ignoring the checkpoint in {folder}: it belongs to another run");
            return false;
        }
        try { TrainingCheckpoint.LoadInto(CheckpointDirectory, Weights(), optimizer); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw CorruptCheckpoint(folder, e.Message);
        }
        CopyMastersToModel();
        if (MetricsPath is not null) TrainingCheckpoint.RestoreMetrics(CheckpointDirectory, MetricsPath);
        position = new Position(saved.Step, saved.MicroBatch, saved.Tokens, saved.TrainedTokens, saved.FirstLoss,
            saved.ElapsedSeconds, saved.WindowLoss, saved.WindowSteps);
        _log.Info($"resuming from the checkpoint at step {saved.Step} ({folder})");
        return true;
    }
}
