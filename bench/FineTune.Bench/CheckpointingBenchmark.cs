using FineTune.Core;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Bench;

/// <summary>
/// Peak memory and speed of LoRA training with and without train.gradient_checkpointing on a Qwen2.5-0.5B-shaped model
/// (random weights, bfloat16 base, float32 adapters r 8 on all seven projections), batch 4 x 384 tokens, every token
/// labelled. Each configuration runs in a child process of this executable, so VmHWM (peak RSS) is its own; the child
/// resets the high-water mark after building the model (/proc/self/clear_refs), so the training peak (model included)
/// excludes the transient float32-then-bfloat16 construction, which is printed apart.
/// Options: --vocab N (151936; 32000 runs faster and smaller), --layers N (24), --steps N (3), --batch N (4), --seq N (384),
/// --float32 (a float32 base instead of bfloat16).
/// Measured 2026-11-28 on the shared 2-core dev machine (no avx512_bf16 there, so bfloat16 crawls: --float32 --vocab 32000,
/// one step each): peak 13,369 MB without, 6,689 MB with checkpointing (50 %). The full vocabulary was not run there
/// (about 4 GB more logits memory and over 10 minutes a step). Speeds under that machine's load are not comparable.
/// 2026-12-06, same options, after LoRA's float32 product stopped keeping dropout masks and dropped inputs and attention
/// in float32 went blocked: 10,259 MB without, 2,648 MB with (26 %).
/// </summary>
internal sealed class CheckpointingBenchmark : IBenchmark
{
    public string Name => "checkpointing";
    public string Description => "peak RSS and tok/s of LoRA training on a Qwen2.5-0.5B shape, gradient checkpointing off vs on";

    private sealed record Options(int Vocab, int Layers, int Steps, int Batch, int Sequence, string Dtype)
    {
        public static Options Parse(string[] args)
        {
            int Get(string name, int fallback)
            {
                var i = Array.IndexOf(args, "--" + name);
                return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
            }
            var dtype = Array.IndexOf(args, "--float32") >= 0 ? "float32" : "bfloat16";
            return new Options(Get("vocab", 151936), Get("layers", 24), Get("steps", 3), Get("batch", 4), Get("seq", 384), dtype);
        }

        public string[] ToArgs() =>
            ["--vocab", $"{Vocab}", "--layers", $"{Layers}", "--steps", $"{Steps}", "--batch", $"{Batch}", "--seq", $"{Sequence}", .. (string[])(Dtype == "float32" ? ["--float32"] : [])];
    }

    private sealed record Measurement(bool Checkpointing, double TrainingPeakMb, double BuildPeakMb, double TokensPerSecond, double SecondsPerStep, double FirstLoss);

    public int Run(string[] args)
    {
        var options = Options.Parse(args);
        var child = Array.IndexOf(args, "--child");
        if (child >= 0) return RunChild(options, args[child + 1] == "on");

        Console.WriteLine($"checkpointing: Qwen2.5-0.5B shape, vocab {options.Vocab}, {options.Layers} layers, LoRA r 8 x 7 projections, "
            + $"{options.Dtype} base, batch {options.Batch} x {options.Sequence}, {options.Steps} steps per configuration (one child process each)");
        var off = BenchModels.RunChild<Measurement>("checkpointing off",
            ["checkpointing", .. options.ToArgs(), "--child", "off"]);
        var on = BenchModels.RunChild<Measurement>("checkpointing on",
            ["checkpointing", .. options.ToArgs(), "--child", "on"]);
        if (off is null || on is null) return 1;
        foreach (var m in new[] { off, on })
            Console.WriteLine($"  checkpointing {(m.Checkpointing ? "on " : "off")}: training peak {m.TrainingPeakMb,8:N0} MB (building the model: {m.BuildPeakMb:N0} MB), "
                + $"{m.TokensPerSecond,7:N0} tok/s ({m.SecondsPerStep:F1} s/step), first loss {m.FirstLoss:F4}");
        var ratio = on.TrainingPeakMb / off.TrainingPeakMb;
        Console.WriteLine($"  training peak with / without: {ratio:P1}; "
            + $"speed with / without: {on.TokensPerSecond / off.TokensPerSecond:P1}; goal <= 60 %: {(ratio <= 0.6 ? "met" : "NOT met")}");
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            benchmark = Name, vocab = options.Vocab, layers = options.Layers, batch = options.Batch, seq = options.Sequence, steps = options.Steps,
            off_training_peak_mb = Math.Round(off.TrainingPeakMb), on_training_peak_mb = Math.Round(on.TrainingPeakMb),
            build_peak_mb = Math.Round(off.BuildPeakMb),
            peak_ratio = Math.Round(ratio, 3),
            off_tokens_per_s = Math.Round(off.TokensPerSecond, 1), on_tokens_per_s = Math.Round(on.TokensPerSecond, 1),
        }));
        return 0;
    }

    private static int RunChild(Options options, bool checkpointing)
    {
        var config = BenchModels.Qwen25HalfB(options.Vocab, options.Layers);
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(1);
        model.to(Trainer.ScalarTypeOf(options.Dtype));
        LoraAdapter.Apply(model, new LoraOptions { R = 8, Alpha = 16, Dropout = 0.05, TargetModules = LoraOptions.DecoderProjections, Seed = 1 });
        model.train();

        var generator = new Random(7);
        var data = new TokenizedDataset.Builder();
        for (var i = 0; i < options.Batch * options.Steps; i++)
        {
            var ids = Enumerable.Range(0, options.Sequence + 1).Select(_ => generator.Next(options.Vocab)).ToArray();
            data.Add(ids, ids);
        }
        var settings = new TrainSettings
        {
            Method = "lora", Dtype = options.Dtype, Epochs = 1, BatchSize = options.Batch, GradientAccumulation = 1, LearningRate = 1e-4,
            Seed = 1, LogEvery = 1, GradientCheckpointing = checkpointing,
        };
        var log = new TimingLog();
        var trainer = new Trainer(model, data.Build(), settings, CPU, log) { StopAfterSteps = options.Steps };
        random.manual_seed(1); // the same dropout masks in both children: equal first losses show checkpointing changed nothing
        GC.Collect();
        var buildPeak = BenchModels.StatusMegabytes("VmHWM");
        if (!ResetPeak()) Console.WriteLine("note: /proc/self/clear_refs is not writable: the training peak includes building the model");
        var result = trainer.Train(CancellationToken.None);

        // The first step pays one-off allocations; speed is measured from its end when there are more.
        var timed = log.StepEnds.Count > 1 ? log.StepEnds[^1] - log.StepEnds[0] : log.StepEnds[0];
        var timedSteps = Math.Max(1, log.StepEnds.Count - 1);
        var tokensPerStep = options.Batch * options.Sequence;
        Console.WriteLine(JsonSerializer.Serialize(new Measurement(checkpointing,
            TrainingPeakMb: BenchModels.StatusMegabytes("VmHWM"), BuildPeakMb: buildPeak,
            TokensPerSecond: tokensPerStep * timedSteps / timed, SecondsPerStep: timed / timedSteps, FirstLoss: result.FirstLoss)));
        return 0;
    }

    /// <summary>Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).</summary>
    private static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private sealed class TimingLog : IStageLog
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        public List<double> StepEnds { get; } = [];
        public void Info(string message) => Console.WriteLine(message);
        public void Warning(string message) => Console.WriteLine("warning: " + message);
        public void Progress(StageProgress progress)
        {
            StepEnds.Add(_clock.Elapsed.TotalSeconds);
            Console.WriteLine($"step {progress.Done}/{progress.Total} at {_clock.Elapsed.TotalSeconds:F1} s: {progress.Detail}; RSS peak {BenchModels.StatusMegabytes("VmHWM"):N0} MB");
        }
    }
}
