using System.Globalization;
using FineTune.Core;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Hub;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Distributed;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>
/// Trains the model on the tokenize stage's train.tokens and writes <c>model/</c> (config.json +
/// model.safetensors, Hugging Face layout), <c>metrics.jsonl</c> and <c>summary.json</c>.
/// </summary>
internal sealed class TrainStage : Stage<TrainSettings>
{
    public override string Name => "train";
    public override int ImplementationVersion => 10;
    public override IReadOnlyList<string> DependsOn => ["tokenize"];

    /// <summary>The launch this process belongs to (its launcher's variables); tests set their own.</summary>
    public LauncherEnvironment Launcher { get; init; } = LauncherEnvironment.FromProcess();

    public override bool RunsOnEveryRank(object settings) =>
        DataParallel.IsOn(((TrainSettings)settings).Distributed, Launcher);

    /// <summary>
    /// The device, and under data-parallel training the number of ranks too ("cpu (2 ranks)"): N ranks of batch B
    /// train another run than one process of batch B, so the key differs, and a checkpoint of one cannot be resumed
    /// by the other (the checkpoint guard names the change). dtype auto on a CPU adds the dtype it chose there
    /// ("cpu, auto bfloat16"): the same file trains in another dtype on a CPU without bfloat16 compute.
    /// </summary>
    protected override ComputeEnvironment ResolveEnvironment(StageContext context, TrainSettings settings)
    {
        var environment = ComputeEnvironmentProvider.Resolve(settings.Device);
        // On device names, not torch devices: building one loads libtorch, which an up-to-date check does without.
        if (settings.Dtype == "auto" && environment.Device == "cpu")
            environment = environment with { Device = $"cpu, auto {Trainer.DtypeName(settings.Dtype, device: null)}" };
        return DataParallel.IsOn(settings.Distributed, Launcher)
            ? environment with { Device = $"{environment.Device} ({Launcher.WorldSize} ranks)" }
            : environment;
    }

    protected override Task RunAsync(StageContext context, TrainSettings settings, CancellationToken cancellationToken)
    {
        var tokenizeDirectory = context.Input("tokenize");
        var trainPath = Path.Combine(tokenizeDirectory, "train.tokens");
        var data = TokenizedDataset.Read(trainPath);
        if (data.Count == 0)
            throw new FineTuneException(context.Pipeline.Locate("stages.train").Error(
                DiagnosticCodes.NoTrainingExamples,
                $"{trainPath} holds no training examples"), ExitCodes.StageFailed);

        var environment = context.Environment;
        var device = ComputeEnvironmentProvider.TorchDevice(environment);
        // One GPU per rank of a node, as torchrun and mpirun number them.
        if (device.type == DeviceType.CUDA && DataParallel.IsOn(settings.Distributed, Launcher))
            device = new Device(DeviceType.CUDA, Launcher.LocalRank);
        var dtype = Trainer.ScalarTypeOf(settings.Dtype, device);
        if (dtype == ScalarType.BFloat16 && device.type == DeviceType.CPU
            && CpuFeatures.ThisCpuHasBfloat16Compute() == false)
            context.Log.Warning("dtype bfloat16 on a CPU without avx512_bf16 or AMX: every product is converted to " +
                "float32, so training is slower than in float32; use dtype: float32 here");
        // Before loading the model: a refused resume should not cost minutes.
        var dataHash = ContentHash.OfFile(trainPath);
        var checkpointKey = TrainingCheckpoint.KeyFor(settings, dataHash, environment);
        using var parallel = DataParallel.Start(settings.Distributed, Launcher, device);
        if (parallel is { IsLeader: false })
        {
            // Rank 0 alone settles checkpoints of other runs; the others read the outcome after this barrier.
            parallel.Barrier("the checkpoint check");
            Train(context, settings, data, device, dtype, checkpointKey, parallel, cancellationToken);
            return Task.CompletedTask;
        }
        var flatSettings = SettingsReflection.Flatten(SettingsReflection.ToPlainTree(settings))
            .ToDictionary(kv => kv.Key, kv => SettingsReflection.Display(kv.Value), StringComparer.Ordinal);
        var carried = CheckpointGuard.Prepare(context.WorkDirectory, Name,
            new RunIdentity(context.Pipeline.FilePath, checkpointKey, flatSettings, dataHash, environment.Device,
                ImplementationVersion),
            context.Checkpoints, context.Log);
        if (carried.Count > 0) context.Summary["resumed_with_changes"] = string.Join("; ", carried);
        parallel?.Barrier("the checkpoint check");
        Train(context, settings, data, device, dtype, checkpointKey, parallel, cancellationToken);
        return Task.CompletedTask;
    }

    private static void Train(StageContext context, TrainSettings settings, TokenizedDataset data, Device device,
        ScalarType dtype, string checkpointKey, DataParallel? parallel, CancellationToken cancellationToken)
    {
        var tokenizeDirectory = context.Input("tokenize");
        var tokenizer = ChatTokenizer.LoadFolder(Path.Combine(tokenizeDirectory, "tokenizer"));
        using var model = settings.IsBuiltin
            ? NewBuiltinModel(settings, tokenizer)
            : LoadPretrainedModel(context, settings, tokenizer, dtype, cancellationToken);
        model.to(dtype).to(device);
        var lora = settings.Method == "lora" ? ApplyLora(model, settings, context.Log) : null;
        model.train();
        var config = model.Config;

        var validationPath = Path.Combine(tokenizeDirectory, "validation.tokens");
        var validation = settings.EvalSteps > 0 && File.Exists(validationPath)
            ? TokenizedDataset.Read(validationPath) : null;
        var trainer = new Trainer(model, data, settings, device, context.Log)
        {
            CheckpointDirectory = context.WorkDirectory,
            CheckpointKey = checkpointKey,
            MetricsPath = Path.Combine(context.OutputDirectory, "metrics.jsonl"),
            TimingsPath = context.TimingsLogPath,
            PackLength = settings.Packing ? TokenizeStage.MaxLengthOf(tokenizeDirectory) : null,
            MeasureValidationLoss = validation is null ? null
                : () => EvaluateStage.ValidationLoss(model, validation, 0, tokenizer.PadTokenId).Loss,
            Parallel = parallel,
        };
        TrainResult result;
        try { result = trainer.Train(cancellationToken); }
        catch (TrainingDivergedException diverged)
        {
            throw new FineTuneException(context.Pipeline.Locate("stages.train.learning_rate").Error(
                DiagnosticCodes.TrainingDiverged, diverged.Advice(settings.Dtype)), ExitCodes.StageFailed);
        }
        if (parallel is not null)
        {
            parallel.Finish();
            // The other ranks hold the same weights; rank 0 writes them.
            if (!parallel.IsLeader) return;
            context.Summary["ranks"] = parallel.WorldSize;
            context.Summary["all_reduce_s"] = Math.Round(parallel.AllReduceSeconds, 3);
        }

        if (lora is not null)
        {
            // The PEFT adapter for Python users; the model folder gets the merged weights, so evaluate, export and
            // chat read one ordinary checkpoint.
            LoraAdapter.SaveAdapter(model, lora.Options, Path.Combine(context.OutputDirectory, "adapter"),
                settings.Model);
            // Merged in float32 whatever the training dtype: the file is float32 (below), and a bfloat16 base plus
            // its update would otherwise be rounded to bfloat16 on the way.
            LoraAdapter.MergeAndUnload(model, ScalarType.Float32);
            context.Summary["trainable_params"] = lora.TrainableCount;
        }
        var modelDirectory = Directory.CreateDirectory(Path.Combine(context.OutputDirectory, "model")).FullName;
        // Under bfloat16 training the float32 master weights are the result, so the file is always float32.
        File.WriteAllText(Path.Combine(modelDirectory, "config.json"), config.ToJson("float32"));
        using (var scope = NewDisposeScope())
        {
            // LoRA: the merged model (its state_dict is a transformers checkpoint again). Full: the trainer's weights,
            // whose float32 masters are the result under bfloat16 (a LoRA module_to_save trained in bfloat16 keeps its
            // rounding).
            var weights = lora is not null ? model.state_dict() : trainer.Weights();
            var cpuWeights = weights.ToDictionary(kv => kv.Key, kv
                => kv.Value.detach().to(ScalarType.Float32).cpu().contiguous());
            Safetensors.Save(Path.Combine(modelDirectory, "model.safetensors"), cpuWeights);
        }

        trainer.Plan!.AddTo(context.Summary, context.Timings);
        context.Summary["steps"] = result.Steps;
        context.Summary["epochs"] = result.Epochs;
        context.Summary["tokens"] = result.Tokens;
        context.Summary["trained_tokens"] = result.TrainedTokens;
        context.Summary["first_loss"] = Math.Round(result.FirstLoss, 4);
        context.Summary["final_loss"] = Math.Round(result.FinalLoss, 4);
        context.Timings["tokens_per_s"] = result.TokensPerSecond;
        context.Timings["mfu"] = result.Mfu;
        context.Timings["duration_s"] = result.DurationSeconds;
        context.Summary["params"] = result.Parameters;
        if (result.PackingEfficiency is { } packingEfficiency)
            context.Summary["packing_efficiency"] = packingEfficiency;
        File.WriteAllText(Path.Combine(context.OutputDirectory, "summary.json"),
            JsonSerializer.Serialize(context.Summary, JsonText.Indented));
    }

    protected override IReadOnlyList<StageInput> ReadInputs(StageContext context, TrainSettings settings)
    {
        if (settings.IsBuiltin) return [];
        // A pretrained model is an input like any file: its configuration and weights enter the key by content. A Hub
        // model's content is what the Hub reports (ETags), so computing the key downloads nothing.
        if (ModelSetting.IdentifyHub(context, settings.Model, "stages.train.model", DiagnosticCodes.ModelNotFound,
            ModelHint, HubKeyFilePatterns) is { } hub)
        {
            var top = hub.Files.Where(f => !f.Name.Contains('/')).ToList();
            var single = top.Where(f => f.Name == ModelFolder.WeightsFile).ToList();
            var weights = single.Count > 0 ? single
                : top.Where(f => f.Name.EndsWith(".safetensors", StringComparison.Ordinal)).ToList();
            if (hub.File(ModelFolder.ConfigFile) is not { } config || weights.Count == 0)
                throw new FineTuneException(context.Pipeline.Locate("stages.train.model").Error(
                    DiagnosticCodes.NoModelFilesOnHub, $"model '{settings.Model}' (commit {hub.Commit}) has no " +
                    $"{(weights.Count == 0 ? "safetensors weights" : ModelFolder.ConfigFile)}; a model needs " +
                    "config.json and safetensors weights"));
            return [.. new[] { config }.Concat(weights).Select(f => hub.Input("model/" + f.Name, f))];
        }
        var model = ModelFolderOf(context, settings);
        return [.. new[] { Path.Combine(model.Folder,
            ModelFolder.ConfigFile) }.Concat(ModelFolder.WeightFiles(model.Folder))
            .Select(file => model.Input("model/" + Path.GetFileName(file), file))];
    }

    /// <summary>
    /// Before any model is loaded (<c>validate --data</c>): the optimizer steps and the estimated time of training on a
    /// tokenize output, from its summary and the model's configuration (the built-in one, a local folder, or a Hub
    /// snapshot already in the cache).
    /// </summary>
    public IEnumerable<string> DescribeFromData(PipelineDefinition pipeline, string tokenizeOutput)
    {
        var settings = (TrainSettings)SettingsIn(pipeline);
        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(tokenizeOutput, TokenizeStage.SummaryFile)))!;
        var train = summary["train"]!;
        var examples = train["examples"]!.GetValue<int>();
        var schedule = StepSchedule.For((examples + settings.BatchSize - 1) / settings.BatchSize,
            settings.GradientAccumulation, settings.Epochs, settings.MaxSteps);
        yield return $"train: {schedule.TotalSteps:N0} optimizer steps of {settings.BatchSize} x " +
            $"{settings.GradientAccumulation} examples over "
            + (settings.MaxSteps > 0 ? "as many epochs as max_steps takes"
                : $"{settings.Epochs.ToString(CultureInfo.InvariantCulture)} epoch(s)")
                + (settings.Packing ? " (before packing)" : "");

        LlamaConfig config;
        if (settings.IsBuiltin) config = BuiltinConfig(settings.Builtin, summary["vocab_size"]!.GetValue<int>());
        else
        {
            try
            {
                var local = Path.GetFullPath(settings.Model, pipeline.Directory);
                var folder = Directory.Exists(local) ? local
                    : ModelSource.ResolveAsync(settings.Model, HubOptions.FromEnvironment(offline: true), null,
                        CancellationToken.None).GetAwaiter().GetResult();
                config = ModelFolder.ReadConfig(folder);
            }
            catch (Exception e) when (e is FineTuneException or IOException)
            {
                yield break;
            }
        }
        var all = LoraAdapter.BaseParameterCount(config);
        var embeddings = (long)config.VocabSize * config.HiddenSize * (config.TieWordEmbeddings ? 1 : 2);
        // This machine's device even when the pipeline asks for another: the estimate is for running here.
        var device = ComputeEnvironmentProvider.TorchDevice(ComputeEnvironmentProvider.Resolve("auto"));
        var peak = FlopCounter.MeasureMatmulFlops(device, Trainer.ScalarTypeOf(settings.Dtype, device));
        var tokens = train["tokens"]!.GetValue<long>();
        var trained = train["trained_tokens"]!.GetValue<long>();
        // Before LoRA is applied its adapters are not counted: a fraction of a percent of the base.
        var lora = settings.Method == "lora";
        var counter = new FlopCounter(config, all - embeddings)
        {
            TrainedParameters = lora ? 0 : all - embeddings,
            HeadTrained = !lora || settings.Lora.ModulesToSave.Contains("lm_head"),
            Recomputed = settings.GradientCheckpointing,
        };
        var flops = counter.TrainingFlops((long)(tokens * settings.Epochs),
            train["length_p90"]!.GetValue<int>(), (int)Math.Min(int.MaxValue, trained * settings.Epochs));
        var utilisation = TrainTimeEstimate.ExpectedUtilisation(Trainer.DtypeName(settings.Dtype, device),
            device.type.ToString().ToLowerInvariant());
        yield return $"time: about {TrainTimeEstimate.Describe(flops, peak, utilisation)} on this " +
            $"{device.type.ToString().ToLowerInvariant()}";
    }

    private const string ModelHint =
        "use builtin:tiny, a Hugging Face layout folder, or a model id such as Qwen/Qwen2.5-0.5B-Instruct";

    /// <summary>What keys a Hub model: its configuration and its weights (the shard index only maps names to
    /// shards).</summary>
    private static readonly IReadOnlyList<string> HubKeyFilePatterns = [ModelFolder.ConfigFile, "*.safetensors"];

    private static ModelLocation ModelFolderOf(StageContext context, TrainSettings settings,
        CancellationToken cancellationToken = default) =>
        ModelSetting.Resolve(context, settings.Model, "stages.train.model", DiagnosticCodes.ModelNotFound,
            ModelHint, cancellationToken: cancellationToken);

    private static AppliedLora ApplyLora(LlamaForCausalLM model, TrainSettings settings, IStageLog log)
    {
        var options = new LoraOptions
        {
            R = settings.Lora.R, Alpha = settings.Lora.Alpha, Dropout = settings.Lora.Dropout,
            TargetModules = settings.Lora.TargetModules, UseRslora = settings.Lora.Rslora, Seed = settings.Seed,
            ModulesToSave = settings.Lora.ModulesToSave,
        };
        var applied = LoraAdapter.Apply(model, options);
        log.Info($"LoRA r {options.R}, alpha {options.Alpha}{(options.UseRslora ? " (rslora)" : "")}, dropout " +
            $"{options.Dropout} on {string.Join(", ", applied.TargetModules)}"
            + (options.ModulesToSave.Count > 0 ? $", fully trained: {string.Join(", ", options.ModulesToSave)}" : ""));
        return applied;
    }

    private static LlamaForCausalLM NewBuiltinModel(TrainSettings settings, ChatTokenizer tokenizer)
    {
        var config = BuiltinConfig(settings.Builtin, tokenizer.VocabSize, tokenizer.BosTokenId, tokenizer.EosTokenId,
            tokenizer.PadTokenId);
        manual_seed(settings.Seed);
        var model = new LlamaForCausalLM(config);
        model.InitializeWeights(settings.Seed);
        return model;
    }

    private static LlamaForCausalLM LoadPretrainedModel(StageContext context, TrainSettings settings,
        ChatTokenizer tokenizer, ScalarType dtype, CancellationToken cancellationToken)
    {
        manual_seed(settings.Seed);
        var model = ModelFolder.Load(ModelFolderOf(context, settings, cancellationToken).Folder, dtype);
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new FineTuneException(context.Pipeline.Locate("stages.tokenize.tokenizer").Error(
                DiagnosticCodes.TokenizerLargerThanModel,
                $"the tokenizer has {tokenizer.VocabSize:N0} tokens but model '{settings.Model}' embeds only " +
                $"{model.Config.VocabSize:N0}; tokenize with the model's own tokenizer (tokenizer: the model's " +
                $"folder)"));
        }
        return model;
    }

    public static LlamaConfig BuiltinConfig(BuiltinModelSettings builtin, int vocabSize, int? bosTokenId = null,
        int? eosTokenId = null, int? padTokenId = null) => new()
    {
        VocabSize = vocabSize,
        HiddenSize = builtin.HiddenSize,
        IntermediateSize = builtin.IntermediateSize,
        NumHiddenLayers = builtin.Layers,
        NumAttentionHeads = builtin.Heads,
        NumKeyValueHeads = builtin.KvHeads,
        RopeTheta = builtin.RopeTheta,
        TieWordEmbeddings = builtin.TieEmbeddings,
        BosTokenId = bosTokenId,
        EosTokenId = eosTokenId,
        PadTokenId = padTokenId,
    };
}
