using System.Diagnostics;
using System.Globalization;
using FineTune.Core;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Bench;

/// <summary>
/// Where a training step's time goes: a bare step split into its phases (decoder forward, head and loss, backward,
/// gradient clipping, AdamW), median seconds of each over the timed steps. CPU work is synchronous, so each phase's
/// wall time is its own.
/// Arguments: [full|lora (default full)] [float32|bfloat16] [batch (default 16)] [sequence (default 72)]
/// [steps (default 6)] [layers (default 4)] [LoRA dropout (default 0.05)]. full is huanhuan-cpu's built-in model (vocab 425); lora is r 8 on
/// Qwen2.5-0.5B layers (vocab 32,768). A sixth of each row is a masked prompt.
/// </summary>
internal sealed class StepProfileBenchmark : IBenchmark
{
    public string Name => "step-profile";
    public string Description => "a bare training step split into forward, head+loss, backward, clip and AdamW: median seconds";

    public int Run(string[] args)
    {
        var full = args.Length < 1 || args[0] != "lora";
        var dtype = args.Length > 1 ? args[1] : "float32";
        var batch = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 16;
        // "N" for one length, "N-M" for a different length of N..M at each step (as length-grouped batches of real data).
        var lengths = (args.Length > 3 ? args[3] : "72").Split('-').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var sequence = lengths[^1];
        var steps = args.Length > 4 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 6;
        var layers = args.Length > 5 ? int.Parse(args[5], CultureInfo.InvariantCulture) : 4;
        var dropout = args.Length > 6 ? double.Parse(args[6], CultureInfo.InvariantCulture) : 0.05;
        var vocab = full ? 425 : 32_768;
        var config = full
            ? BenchModels.CpuJobModel(vocab, layers)
            : BenchModels.Qwen25HalfB(vocab, layers);
        var scalarType = Trainer.ScalarTypeOf(dtype);
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(1);
        model.to(scalarType);
        var lora = full ? null : LoraAdapter.Apply(model, new LoraOptions { R = 8, Alpha = 16, Dropout = dropout, TargetModules = [LoraOptions.AllLinear], Seed = 1 });
        var parameters = lora?.TrainableParameters.ToList() ?? model.parameters().ToList();
        using var optimizer = optim.AdamW(parameters, 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0);
        model.train();
        var generator = new Random(3);
        int LengthAt(int step) => lengths.Length == 1 ? lengths[0] : lengths[0] + step * 37 % (lengths[1] - lengths[0] + 1);

        string[] phases = ["forward", "head+loss", "backward", "clip", "adamw"];
        var times = phases.ToDictionary(p => p, _ => new List<double>());
        long tokens = 0;
        for (var step = 0; step <= steps; step++)
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            double Lap() { var s = clock.Elapsed.TotalSeconds; clock.Restart(); return s; }
            var split = new double[phases.Length];
            optimizer.zero_grad();
            var length = LengthAt(step);
            var ids = Enumerable.Range(0, batch * length).Select(_ => (long)generator.Next(vocab)).ToArray();
            var positions = Enumerable.Range(0, batch * length).Where(i => i % length >= length / 6).Select(i => (long)i).ToArray();
            var targets = positions.Select(_ => (long)generator.Next(vocab)).ToArray();
            tokens += batch * length;
            var hidden = model.Hidden(tensor(ids, [batch, length]));
            split[0] = Lap();
            var trained = hidden.reshape(-1, hidden.shape[^1]).index_select(0, tensor(positions));
            var loss = ChunkedCrossEntropy.Sum(model, trained, tensor(targets)) / positions.Length;
            _ = loss.item<float>();
            split[1] = Lap();
            loss.backward();
            split[2] = Lap();
            nn.utils.clip_grad_norm_(parameters, 1.0);
            split[3] = Lap();
            optimizer.step();
            split[4] = Lap();
            if (step == 0) { tokens = 0; continue; } // warm-up
            for (var i = 0; i < phases.Length; i++) times[phases[i]].Add(split[i]);
        }
        var total = phases.Sum(p => BenchModels.Median(times[p]));
        Console.WriteLine($"{(full ? "full" : "lora")} {dtype}, allocator {NativeAllocator.ThisProcess()}, {layers} layers, {batch} x {string.Join("-", lengths)}, {parameters.Count} trained tensors ({parameters.Sum(p => p.numel()):N0} values), torch threads {get_num_threads()}");
        foreach (var phase in phases)
            Console.WriteLine($"  {phase,-10} {BenchModels.Median(times[phase]) * 1000,9:N1} ms  {BenchModels.Median(times[phase]) / total,6:P1}");
        Console.WriteLine($"  {"step",-10} {total * 1000,9:N1} ms  {tokens / (double)steps / total,9:N0} tok/s (median phases, mean tokens)");
        return 0;
    }
}
