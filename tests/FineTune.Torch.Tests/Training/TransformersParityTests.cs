using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.TestKit;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Training;

/// <summary>
/// A fact that runs where a Python with PyTorch is found: the one <see cref="Variable"/> names (then it must work: CI
/// sets it after installing Debian's python3-torch), else /usr/bin/python3 or python3 on the PATH if they import torch.
/// </summary>
public sealed class PyTorchFactAttribute : FactAttribute
{
    public const string Variable = "FINETUNE_PYTORCH_PYTHON";

    public PyTorchFactAttribute()
    {
        if (Interpreter.Value is null)
            Skip = $"no Python with PyTorch: install it (Debian: apt-get install python3-torch) or set {Variable}";
    }

    public static readonly Lazy<string?> Interpreter = new(() =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } named ? named
            : new[] { "/usr/bin/python3", "python3" }.FirstOrDefault(ImportsTorch));

    private static bool ImportsTorch(string python)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(python, ["-c", "import torch"])
            {
                RedirectStandardError = true, RedirectStandardOutput = true,
            })!;
            process.StandardError.ReadToEnd();
            return process.WaitForExit(60_000) && process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }
}

/// <summary>
/// The issue's "done when": a pipeline with transformers' defaults trains step for step like transformers. The other
/// side is transformers_trainer_reference.py, transformers' Trainer and PEFT's LoRA as documented, written in plain
/// PyTorch with its own model code: the same initial weights and the same micro-batches must give the same loss,
/// gradient norm and learning rate at every optimizer step, and the same trained weights, within float32 tolerance.
/// Six steps of two epochs: warmup, linear decay, accumulation with an epoch's short last step, clipping, decay groups.
/// </summary>
public sealed class TransformersParityTests
{
    private static TokenizedDataset Examples()
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < 20; i++)
        {
            var length = 6 + i * 7 % 19;
            var prompt = 2 + i % 4;
            var ids = Enumerable.Range(0, length).Select(t => (31 * i + 17 * t + t * t) % 257 + 3).ToArray();
            builder.Add(ids, ids.Select((id, t) => t < prompt ? TokenizedDataset.IgnoreLabel : id).ToArray());
        }
        return builder.Build();
    }

    /// <summary>max_grad_norm is set under the first step's gradient norm, so clipping is exercised.</summary>
    private static TrainSettings Settings(double learningRate, double maxGradNorm) => new()
    {
        Epochs = 3, BatchSize = 4, GradientAccumulation = 2, LearningRate = learningRate, WarmupSteps = 2,
        LrSchedulerType = "linear", WeightDecay = 0.1, MaxGradNorm = maxGradNorm, Seed = 5, LogEvery = 1,
    };

    [PyTorchFact]
    public void Full_fine_tuning_of_a_llama_trains_as_transformers_does()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 2));
        model.InitializeWeights(11);
        AssertSameRunAsTransformers(model, Settings(learningRate: 5e-3, maxGradNorm: 0.5), lora: null);
    }

    [PyTorchFact]
    public void Lora_on_a_qwen2_with_biases_and_tied_embeddings_trains_as_transformers_and_peft_do()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(tied: true, layers: 2) with
        {
            ModelType = "qwen2", AttentionBias = true,
        });
        model.InitializeWeights(12);
        var lora = new LoraOptions { R = 4, Alpha = 8, TargetModules = LoraOptions.DecoderProjections, Seed = 3 };
        LoraAdapter.Apply(model, lora);
        AssertSameRunAsTransformers(model, Settings(learningRate: 2e-2, maxGradNorm: 0.05), lora);
    }

    private static void AssertSameRunAsTransformers(LlamaForCausalLM model, TrainSettings settings, LoraOptions? lora)
    {
        using var folder = new TempFolder();
        var data = Examples();
        WriteJob(folder, model, data, settings, lora);

        var trainer = new Trainer(model, data, settings, CPU, new RecordingLog())
        {
            MetricsPath = folder.File("metrics.jsonl"),
        };
        trainer.Train(CancellationToken.None);
        var logged = File.ReadLines(folder.File("metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();

        RunReference(folder.Path);
        var reference = JsonNode.Parse(File.ReadAllText(folder.File("result.json")))!;
        var losses = reference["losses"]!.AsArray().Select(v => (double)v!).ToList();
        var gradNorms = reference["grad_norms"]!.AsArray().Select(v => (double)v!).ToList();
        var rates = reference["learning_rates"]!.AsArray().Select(v => (double)v!).ToList();

        Assert.Equal(6, losses.Count);
        Assert.Equal(losses.Count, trainer.Losses.Count);
        Assert.Equal(losses.Count, logged.Count);
        Assert.True(gradNorms[0] > settings.MaxGradNorm, $"the first gradient norm {gradNorms[0]} is not clipped");
        for (var step = 0; step < losses.Count; step++)
        {
            // Measured: losses within 1e-7 relative; norms within 5e-6, the rounding of metrics.jsonl.
            Assert.True(Math.Abs(trainer.Losses[step] - losses[step]) <= 2e-6 * losses[step],
                $"step {step + 1}: loss {trainer.Losses[step]} vs transformers {losses[step]}");
            Assert.Equal(rates[step], (double)logged[step]["lr"]!, 12);
            Assert.True(Math.Abs((double)logged[step]["grad_norm"]! - gradNorms[step]) <= 1e-5 + 1e-4 * gradNorms[step],
                $"step {step + 1}: gradient norm {logged[step]["grad_norm"]} vs transformers {gradNorms[step]}");
        }

        var final = Safetensors.Load(folder.File("final.safetensors"));
        var weights = trainer.Weights();
        var trained = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order();
        Assert.Equal(trained, final.Keys.Order());
        // AdamW moves a weight by about the learning rate per step, whatever its gradient, so rounding in a small
        // gradient (a LoRA A right after B leaves zero) shows up at that scale: measured 1.2e-7 (full) and 2e-5 (LoRA).
        var tolerance = 1e-3 * settings.LearningRate * losses.Count;
        foreach (var (name, expected) in final)
        {
            var difference = (weights[name] - expected).abs().max().item<float>();
            Assert.True(difference <= tolerance, $"{name}: trained weights differ by up to {difference}");
        }
    }

    private static void WriteJob(TempFolder folder, LlamaForCausalLM model, TokenizedDataset data,
        TrainSettings settings, LoraOptions? lora)
    {
        File.WriteAllText(folder.File("config.json"), model.Config.ToJson("float32"));
        Safetensors.Save(folder.File("initial.safetensors"), model.state_dict());
        var epochs = Enumerable.Range(0, (int)Math.Ceiling(settings.Epochs))
            .Select(e => Batching.EpochBatches(data, settings.BatchSize, settings.Seed, e)).ToList();
        Assert.Equal(5, epochs[0].Count); // 20 examples in batches of 4: two steps of 2 and one of 1 per epoch
        var job = new
        {
            settings = new
            {
                num_train_epochs = settings.Epochs, gradient_accumulation_steps = settings.GradientAccumulation,
                learning_rate = settings.LearningRate, lr_scheduler_type = settings.LrSchedulerType,
                warmup_steps = settings.WarmupSteps, warmup_ratio = settings.WarmupRatio,
                weight_decay = settings.WeightDecay, adam_beta1 = settings.AdamBeta1, adam_beta2 = settings.AdamBeta2,
                adam_epsilon = settings.AdamEpsilon, max_grad_norm = settings.MaxGradNorm,
                lora_r = lora?.R ?? 0, lora_alpha = lora?.Alpha ?? 0,
            },
            examples = Enumerable.Range(0, data.Count).Select(i => new
            {
                input_ids = data.Ids(i).ToArray(), labels = data.Labels(i).ToArray(),
            }),
            epochs,
        };
        File.WriteAllText(folder.File("job.json"), JsonSerializer.Serialize(job));
    }

    private static void RunReference(string folder)
    {
        var script = Repository.File("tests/FineTune.Torch.Tests/Training/transformers_trainer_reference.py");
        using var process = Process.Start(new ProcessStartInfo(PyTorchFactAttribute.Interpreter.Value!,
            [script, folder]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        var errors = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(300_000), "the PyTorch reference did not finish in 5 minutes");
        Assert.True(process.ExitCode == 0, $"the PyTorch reference failed:\n{output}{errors.Result}");
    }
}
