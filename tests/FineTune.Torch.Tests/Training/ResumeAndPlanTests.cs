using FineTune.TestKit;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Tests.Fakes;
using FineTune.Torch.Training;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Training;

/// <summary>
/// Dropout draws from libtorch's global generator, which the trainer seeds each step; tests elsewhere in the assembly
/// seed and draw from it too, so the bit-exact resume tests run alone, after the parallel ones.
/// </summary>
[CollectionDefinition(nameof(GlobalGeneratorCollection), DisableParallelization = true)]
public sealed class GlobalGeneratorCollection;

[Collection(nameof(GlobalGeneratorCollection))]
public sealed class ResumeAndPlanTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("finetune-resume-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void The_tutorials_recipe_takes_699_steps_as_transformers_Trainer_does()
    {
        // 3,729 records at batch 4 are 933 batches; 933 // 4 = 233 steps per epoch, 3 epochs = 699 (not ceil(2799 / 4) = 700).
        var schedule = StepSchedule.For(batchesPerEpoch: 933, accumulation: 4, epochs: 3);
        Assert.Equal(699, schedule.TotalSteps);
        Assert.Equal(4, schedule.MicroBatchesPerStep);
        // Each epoch is 233 steps of 4 batches and one of the 933rd alone, so 699 steps end 231 steps into the third.
        Assert.Equal(2 * 933 + 231 * 4, schedule.TotalMicroBatches);
        Assert.Equal(new StepSchedule(9, 2, 18), StepSchedule.For(6, 2, 3));
        Assert.Equal(new StepSchedule(3, 2, 6), StepSchedule.For(2, 4, 3)); // an epoch shorter than one accumulation: a step per epoch
        Assert.Equal(3, StepSchedule.For(933, 4, 0.01).TotalSteps); // ceil(0.01 * 233 = 2.33)
    }

    [Fact]
    public void The_plan_of_3729_records_counts_their_batches_steps_and_tokens()
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < 3729; i++) builder.Add([1, 2, 3, 4 + i % 5], [TokenizedDataset.IgnoreLabel, TokenizedDataset.IgnoreLabel, 3, 4 + i % 5]);
        var data = builder.Build();
        var settings = new TrainSettings { Builtin = Tiny, BatchSize = 4, GradientAccumulation = 4, Epochs = 3 };
        using var model = new LlamaForCausalLM(TrainStage.BuiltinConfig(settings.Builtin, 16));

        var plan = TrainPlan.For(model, data, Batching.EpochBatches(data, settings.BatchSize, settings.Seed, 0).Select(b => b.Select(e => new[] { e }).ToArray()).ToList(), settings, CPU, peakFlops: 1e11);

        Assert.Equal(933, plan.BatchesPerEpoch);
        Assert.Equal(699, plan.Schedule.TotalSteps);
        Assert.Equal(3729, plan.Examples);
        Assert.Equal(3729L * 3, plan.TokensPerEpoch);
        Assert.Equal(model.parameters().Sum(p => p.numel()), plan.TrainableParameters);
        Assert.True(plan.TrainingFlops > 0 && plan.EstimatedSeconds > 0);
        var lines = plan.Lines().ToList();
        Assert.Contains(lines, l => l.Contains("699 optimizer steps of 4 x 4 examples"));
        Assert.Contains(lines, l => l.Contains("3,729 examples, 11,187 tokens per epoch, 3 epoch(s)"));
        Assert.Contains(lines, l => l.StartsWith("plan: estimated time "));
    }

    [Fact]
    public void The_plan_line_of_Llama3_8B_LoRA_r8_reads_as_PEFT_counts_it()
    {
        var llama3_8B = new LlamaConfig
        {
            VocabSize = 128256, HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32,
            NumAttentionHeads = 32, NumKeyValueHeads = 8, MaxPositionEmbeddings = 8192,
        };
        var trainable = new LoraOptions { R = 8, TargetModules = [LoraOptions.AllLinear] }.TrainableParameterCount(llama3_8B);
        var all = LoraAdapter.BaseParameterCount(llama3_8B) + trainable;
        var plan = new TrainPlan("meta-llama/Meta-Llama-3-8B", "llama", all - trainable, "lora", trainable, all, 3729, 3, 4, 4,
            StepSchedule.For(933, 4, 3), 933, 1_000_000, 1e15, 1e12, "cuda", "bfloat16");

        Assert.Contains("plan: method lora, trainable 20,971,520 of 8,051,232,768 (0.26 %)", plan.Lines());
    }

    // ---- resume across changed settings (stage level: work folders per key, as the runner makes them) ----

    private static readonly BuiltinModelSettings Tiny = new() { HiddenSize = 16, Layers = 2, Heads = 4, KvHeads = 2, IntermediateSize = 32 };

    private static TrainSettings Settings(string method = "full") => new()
    {
        Builtin = Tiny, Method = method, Epochs = 3, BatchSize = 4, GradientAccumulation = 2, LearningRate = 1e-2,
        LrSchedulerType = "cosine_to_min_lr", WarmupRatio = 0.1, MinLrRatio = 0.1, AdamBeta2 = 0.95, WeightDecay = 0.01, Seed = 5, LogEvery = 1,
        Lora = new LoraSettings { R = 2, Alpha = 4, Dropout = 0.1 },
    };

    private async Task<(StageContext Context, RecordingLog Log)> RunStage(TrainSettings settings, string workName,
        CheckpointPolicy policy = CheckpointPolicy.Resume, int? cancelAtStep = null)
    {
        var tokenize = TrainData.WriteTokenizeOutput(Path.Combine(_root, "tokenize"));
        var pipeline = new PipelineDefinition { FilePath = Path.Combine(_root, "p.yaml") };
        pipeline.Stages.Train = settings;
        var output = Path.Combine(_root, "out-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(output);
        var log = new RecordingLog();
        using var cancellation = new CancellationTokenSource();
        log.OnProgress = p => { if (p.Done == cancelAtStep) cancellation.Cancel(); };
        var context = new StageContext
        {
            Pipeline = pipeline, Settings = pipeline.Stages.Train, PipelineDirectory = _root, OutputDirectory = output, Name = "train",
            InputDirectories = new Dictionary<string, string> { ["tokenize"] = tokenize },
            WorkDirectory = Path.Combine(_root, "store", "work", workName), Log = log,
            Environment = new ComputeEnvironment("cpu", "test", 1), Checkpoints = policy,
        };
        await new TrainStage().RunAsync(context, cancellation.Token);
        return (context, log);
    }

    private static Dictionary<string, Tensor> Weights(StageContext context) =>
        Safetensors.Load(Path.Combine(context.OutputDirectory, "model", "model.safetensors"));

    private static void AssertBitIdentical(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
            Assert.True(tensor.dtype == actual[name].dtype && tensor.eq(actual[name]).all().item<bool>(), $"{name} differs");
    }

    [Theory]
    [InlineData("full")]
    [InlineData("lora")]
    public async Task An_interrupted_unchanged_run_resumes_to_bit_identical_weights(string method)
    {
        var (straight, _) = await RunStage(Settings(method), "train-straight");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RunStage(Settings(method), "train-aaaa", cancelAtStep: 4));

        var (resumed, log) = await RunStage(Settings(method), "train-aaaa");

        Assert.Contains(log.Lines, l => l.Contains("resuming from the checkpoint at step 4"));
        AssertBitIdentical(Weights(straight), Weights(resumed));
        if (method == "lora")
            Assert.True(File.Exists(Path.Combine(resumed.OutputDirectory, "adapter", LoraAdapter.WeightsFile)));
    }

    [Fact]
    public async Task A_changed_learning_rate_is_refused_with_the_list_then_resumed_with_the_flag()
    {
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RunStage(Settings(), "train-aaaa", cancelAtStep: 4));
        var changed = Settings();
        changed.LearningRate = 2e-2;
        changed.LogEvery = 2;

        var refused = await Assert.ThrowsAsync<FineTuneException>(() => RunStage(changed, "train-bbbb"));
        Assert.Equal("FT0540", refused.Diagnostics[0].Code);
        Assert.Equal(ExitCodes.InvalidInput, refused.ExitCode);
        Assert.Contains("learning_rate: 0.01 -> 0.02; log_every: 1 -> 2", refused.Message);
        Assert.Contains("--restart", refused.Message);
        Assert.Contains("--resume-with-changes", refused.Message);

        var (context, log) = await RunStage(changed, "train-bbbb", CheckpointPolicy.ResumeWithChanges);
        Assert.Contains(log.Lines, l => l.Contains("resuming from the checkpoint at step 4"));
        Assert.Equal("learning_rate: 0.01 -> 0.02; log_every: 1 -> 2", context.Summary["resumed_with_changes"]);
        Assert.Equal(9, context.Summary["steps"]);
        Assert.False(Directory.Exists(Path.Combine(_root, "store", "work", "train-aaaa")));
    }

    [Fact]
    public async Task Changes_to_the_model_or_the_batches_cannot_be_resumed_and_restart_discards_the_checkpoint()
    {
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RunStage(Settings(), "train-aaaa", cancelAtStep: 4));
        var changed = Settings();
        changed.BatchSize = 2;

        var refused = await Assert.ThrowsAsync<FineTuneException>(() => RunStage(changed, "train-bbbb", CheckpointPolicy.ResumeWithChanges));
        Assert.Equal("FT0541", refused.Diagnostics[0].Code);
        Assert.Contains("batch_size: 4 -> 2", refused.Message);
        Assert.True(Directory.Exists(Path.Combine(_root, "store", "work", "train-aaaa", "checkpoint")));

        var (context, log) = await RunStage(changed, "train-bbbb", CheckpointPolicy.Restart);
        Assert.DoesNotContain(log.Lines, l => l.Contains("resuming"));
        Assert.Contains(log.Lines, l => l.Contains("--restart: discarded 1 checkpoint(s)"));
        Assert.False(Directory.Exists(Path.Combine(_root, "store", "work", "train-aaaa")));
        Assert.Equal(18, context.Summary["steps"]); // 12 batches of 2 per epoch, 2 per step, 3 epochs
    }

    [Fact]
    public async Task A_bfloat16_LoRA_run_with_the_head_saved_writes_a_merged_checkpoint_and_the_head_in_the_adapter()
    {
        var settings = Settings("lora");
        settings.Dtype = "bfloat16";
        settings.Builtin = new BuiltinModelSettings { HiddenSize = 16, Layers = 2, Heads = 4, KvHeads = 2, IntermediateSize = 32, TieEmbeddings = false };
        settings.Lora.ModulesToSave = ["lm_head"];

        var (context, log) = await RunStage(settings, "train-bf16");

        Assert.Contains(log.Lines, l => l.Contains("fully trained: lm_head"));
        var weights = Weights(context);
        using var plain = new LlamaForCausalLM(TrainStage.BuiltinConfig(settings.Builtin, TrainData.Vocab));
        Assert.Equal(plain.state_dict().Keys.Order(), weights.Keys.Order()); // merged: no lora_* keys, every base key
        var adapter = Safetensors.Load(Path.Combine(context.OutputDirectory, "adapter", LoraAdapter.WeightsFile));
        Assert.True(adapter["base_model.model.lm_head.weight"].eq(weights["lm_head.weight"]).all().item<bool>());
        Assert.True((long)context.Summary["plan_trainable_params"] > TrainData.Vocab * 16);
    }
}
