using FineTune.Core;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Bench;

/// <summary>
/// Two shapes, each measured as our Trainer's step time, tokens/s, FLOP utilisation against the in-process matmul peak
/// and peak RSS, next to a bare TorchSharp loop over the same model and batches (forward, loss, backward, clip, AdamW
/// step: the "peer", a plain eager loop without our trainer) in the same process, alternating, so the Trainer is read
/// against it under the same machine noise.
/// lora: LoRA r 8 (all seven projections) on a Qwen2.5-0.5B-shaped model with random weights (hidden 896, 14/2 heads,
/// intermediate 4864, tied embeddings, q/k/v biases), at sequence 384 and batch 4. The vocabulary is cut from 151,936
/// to 32,768 rows (the head only runs at labelled positions, so this mostly saves memory and start-up).
/// full: full fine-tuning of huanhuan-cpu.yaml's built-in model (hidden 256, 4 layers, 8/4 heads, intermediate 688,
/// its pruned vocabulary of 425) at sequence 128 and batch 16. Under bfloat16 the Trainer keeps float32 masters, the
/// bare loop steps the bfloat16 weights themselves (less work than ours).
/// Arguments: [timed steps per run (default 1)] [float32|bfloat16 (default float32)] [rounds (default 2)]
/// [layers (default 24; full: 4)] [lora|full (default lora)]; each run adds a warm-up step. Peak RSS of lora is about
/// 13 GB in float32 at 24 layers (activations at 4 x 384 tokens, no recomputation).
/// </summary>
internal sealed class TrainLoopBenchmark : IBenchmark
{
    public string Name => "train-loop";
    public string Description => "LoRA r8 on Qwen2.5-0.5B layers (4 x 384) or full FT of huanhuan-cpu's model (16 x 128): Trainer vs a bare TorchSharp loop";

    private sealed record Shape(string Name, int Sequence, int Batch, int Vocab, int MaskedPrompt);

    private static readonly Shape LoraShape = new("lora", 384, 4, 32_768, 32);
    private static readonly Shape FullShape = new("full", 128, 16, 425, 16);

    public int Run(string[] args)
    {
        var steps = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1;
        var rounds = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2;
        var shape = args.Length > 4 && args[4] == "full" ? FullShape : LoraShape;
        var full = shape == FullShape;
        var layers = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : full ? 4 : 24;
        var dtype = args.Length > 1 ? args[1] : "float32";
        var (sequence, batch, vocab) = (shape.Sequence, shape.Batch, shape.Vocab);
        var scalarType = Trainer.ScalarTypeOf(dtype);
        var config = full
            ? BenchModels.CpuJobModel(vocab, layers)
            : BenchModels.Qwen25HalfB(vocab, layers);
        // One example per micro-batch slot and step (+ one warm-up step), its prompt masked.
        var data = Examples(shape, (steps + 1) * batch);
        var settings = new TrainSettings
        {
            Method = full ? "full" : "lora", Epochs = 1, BatchSize = batch, GradientAccumulation = 1,
            LearningRate = 1e-4, WarmupRatio = 0, MaxGradNorm = 1.0, Seed = 1, LogEvery = 1, Dtype = dtype,
            Lora = new LoraSettings { R = 8, Alpha = 16, Dropout = 0.05 },
        };

        manual_seed(1);
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(1);
        model.to(scalarType);
        var lora = full ? null : LoraAdapter.Apply(model, new LoraOptions { R = 8, Alpha = 16, Dropout = 0.05, TargetModules = [LoraOptions.AllLinear], Seed = 1 });
        var trainable = lora?.TrainableParameters.ToList() ?? model.parameters().ToList();
        Console.WriteLine($"shape {shape.Name}: {batch} x {sequence} tokens; model: {model.parameters().Sum(p => p.numel()):N0} parameters ({dtype}), trainable {trainable.Sum(p => p.numel()):N0}; torch threads {get_num_threads()}; allocator {NativeAllocator.ThisProcess()}");

        var peak = FlopCounter.MeasureMatmulFlops(CPU, scalarType, seconds: 1.0);
        var counter = FlopCounter.Of(model);
        var batches = Batching.EpochBatches(data, batch, settings.Seed, 0);
        var labels = batches.Select(b => b.Sum(e => data.Labels(e).ToArray().Skip(1).Count(l => l != TokenizedDataset.IgnoreLabel))).ToList();
        double StepFlops(int i) => counter.TrainingFlops(batch * (long)sequence, sequence, labels[i]);

        // Alternate bare and Trainer runs so machine noise (shared cores) hits both alike; each run's first step warms up.
        var bare = new List<double>();
        var trained = new List<double>();
        for (var round = 0; round < rounds; round++)
        {
            bare.AddRange(BareLoop(model, trainable, data, batches, settings, sequence).Skip(1));
            Console.WriteLine($"round {round + 1}: bare {string.Join(", ", bare.Select(v => v.ToString("N2", CultureInfo.InvariantCulture)))} s");
            trained.AddRange(TrainerLoop(model, data, settings).Skip(1));
            Console.WriteLine($"round {round + 1}: Trainer {string.Join(", ", trained.Select(v => v.ToString("N2", CultureInfo.InvariantCulture)))} s");
        }

        var bareStep = BenchModels.Median(bare);
        var trainerStep = BenchModels.Median(trained);
        var flops = Enumerable.Range(1, steps).Average(StepFlops);
        var tokensPerSecond = batch * sequence / trainerStep;
        var overhead = (trainerStep - bareStep) / bareStep;
        var peakRssMb = (long)BenchModels.StatusMegabytes("VmHWM");
        Console.WriteLine($"matmul peak {peak / 1e9:N0} GFLOP/s ({dtype}); model FLOPs per step {flops / 1e12:N2} TFLOP (FlopCounter: 4N + 6N_lora per token, frozen weights get no weight gradient)");
        Console.WriteLine($"bare loop : {bareStep:N2} s/step  (median of {bare.Count}: {string.Join(", ", bare.Select(s => s.ToString("N2", CultureInfo.InvariantCulture)))})");
        Console.WriteLine($"Trainer   : {trainerStep:N2} s/step  (median of {trained.Count}: {string.Join(", ", trained.Select(s => s.ToString("N2", CultureInfo.InvariantCulture)))})");
        Console.WriteLine($"Trainer   : {tokensPerSecond:N0} tokens/s, FLOP utilisation {flops / trainerStep / peak:P1}, overhead vs bare {overhead:P1} (goal <= 5 %)");
        Console.WriteLine($"peak RSS  : {peakRssMb:N0} MB (VmHWM)");
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            benchmark = Name, shape = shape.Name, dtype, allocator = NativeAllocator.ThisProcess(),
            bare_tokens_per_s = Math.Round(batch * sequence / bareStep, 1), steps = trained.Count, sequence = sequence, batch = batch, vocab = vocab,
            bare_s = Math.Round(bareStep, 3), trainer_s = Math.Round(trainerStep, 3), tokens_per_s = Math.Round(tokensPerSecond, 1),
            mfu = Math.Round(flops / trainerStep / peak, 4), overhead = Math.Round(overhead, 4), peak_gflops = Math.Round(peak / 1e9, 1),
            peak_rss_mb = peakRssMb,
        }));
        return 0;
    }

    private static TokenizedDataset Examples(Shape shape, int count)
    {
        var builder = new TokenizedDataset.Builder();
        var random = new Random(7);
        for (var i = 0; i < count; i++)
        {
            var ids = Enumerable.Range(0, shape.Sequence + 1).Select(_ => random.Next(shape.Vocab)).ToArray();
            var labels = ids.Select((id, t) => t < shape.MaskedPrompt ? TokenizedDataset.IgnoreLabel : id).ToArray();
            builder.Add(ids, labels);
        }
        return builder.Build();
    }

    /// <summary>The Trainer on the benchmark data; returns the seconds of each optimizer step (from its progress reports).</summary>
    private static List<double> TrainerLoop(LlamaForCausalLM model, TokenizedDataset data, TrainSettings settings)
    {
        var log = new TimingLog();
        new Trainer(model, data, settings, CPU, log).Train(CancellationToken.None);
        return log.StepSeconds;
    }

    /// <summary>What a training step needs at the least, written directly against TorchSharp.</summary>
    private static List<double> BareLoop(LlamaForCausalLM model, List<Parameter> parameters, TokenizedDataset data, IReadOnlyList<int[]> batches, TrainSettings settings, int sequence)
    {
        using var optimizer = optim.AdamW(parameters, settings.LearningRate, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0);
        model.train();
        var seconds = new List<double>();
        foreach (var examples in batches)
        {
            var clock = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var ids = examples.SelectMany(e => data.Ids(e)[..sequence].ToArray().Select(i => (long)i)).ToArray();
            var positions = new List<long>();
            var targets = new List<long>();
            for (var b = 0; b < examples.Length; b++)
            {
                var labels = data.Labels(examples[b]);
                for (var t = 0; t < sequence; t++)
                    if (labels[t + 1] != TokenizedDataset.IgnoreLabel) { positions.Add(b * sequence + t); targets.Add(labels[t + 1]); }
            }
            var hidden = model.Hidden(tensor(ids, [examples.Length, sequence]));
            var logits = model.Logits(hidden.reshape(-1, hidden.shape[^1]).index_select(0, tensor(positions.ToArray()))).to(ScalarType.Float32);
            var loss = F.cross_entropy(logits, tensor(targets.ToArray()));
            loss.backward();
            nn.utils.clip_grad_norm_(parameters, settings.MaxGradNorm);
            optimizer.step();
            _ = loss.item<float>(); // the Trainer reads the loss every step too
            seconds.Add(clock.Elapsed.TotalSeconds);
        }
        return seconds;
    }


    private sealed class TimingLog : IStageLog
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private double? _last;
        public List<double> StepSeconds { get; } = [];
        public void Info(string message) { if (message.StartsWith("plan:", StringComparison.Ordinal)) _last = null; }
        public void Warning(string message) { }

        public void Progress(StageProgress progress)
        {
            var now = _clock.Elapsed.TotalSeconds;
            // The first report comes after step 1 (which includes start-up); later ones time one step each.
            if (_last is { } last) StepSeconds.Add(now - last);
            else StepSeconds.Add(double.NaN);
            _last = now;
        }
    }
}
