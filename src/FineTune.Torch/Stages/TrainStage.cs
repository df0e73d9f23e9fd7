using FineTune.Core;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Checkpoints;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>
/// Trains the model on the tokenize stage's train.tokens and writes <c>model/</c> (config.json +
/// model.safetensors, Hugging Face layout), <c>metrics.jsonl</c> and <c>summary.json</c>.
/// </summary>
public sealed class TrainStage : Stage
{
    public override string Name => "train";
    public override int ImplementationVersion => 2;
    public override IReadOnlyList<string> DependsOn => ["tokenize"];
    public override bool DependsOnComputeEnvironment => true;
    public override object SelectSettings(PipelineDefinition pipeline) => pipeline.Stages.Train;

    public override Task RunAsync(StageContext context, CancellationToken cancellationToken)
    {
        var settings = context.Settings<TrainSettings>();
        var tokenizeDirectory = context.Input("tokenize");
        var trainPath = Path.Combine(tokenizeDirectory, "train.tokens");
        var data = TokenizedDataset.Read(trainPath);
        if (data.Count == 0)
            throw new FineTuneException(context.Pipeline.Locate("stages.train").Error("FT0503", $"{trainPath} holds no training examples"), ExitCodes.StageFailed);

        var environment = context.Environment.Device == ComputeEnvironment.None.Device
            ? ComputeEnvironmentProvider.Resolve(settings.Device)
            : context.Environment;
        var device = ComputeEnvironmentProvider.TorchDevice(environment);
        var dtype = Trainer.ScalarTypeOf(settings.Dtype);
        var tokenizer = ChatTokenizer.LoadFolder(Path.Combine(tokenizeDirectory, "tokenizer"));
        var config = BuiltinConfig(settings.Builtin, tokenizer.VocabSize, tokenizer.BosTokenId, tokenizer.EosTokenId, tokenizer.PadTokenId);

        manual_seed(settings.Seed);
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(settings.Seed);
        model.to(dtype).to(device);
        var parameterCount = model.parameters().Sum(p => p.numel());
        context.Log.Info($"model builtin:tiny: {parameterCount:N0} parameters ({config.HiddenSize} hidden, {config.NumHiddenLayers} layers, "
            + $"{config.NumAttentionHeads}/{config.NumKeyValueHeads} heads, vocab {config.VocabSize}) on {environment.Device}, {settings.Dtype}; "
            + $"{data.Count:N0} examples, {data.TokenCount:N0} tokens");

        var trainer = new Trainer(model, data, settings, device, context.Log)
        {
            CheckpointDirectory = context.WorkDirectory,
            CheckpointKey = ContentHash.OfText(JsonSerializer.Serialize(settings) + "|" + ContentHash.OfFile(trainPath) + "|" + environment),
            MetricsPath = Path.Combine(context.OutputDirectory, "metrics.jsonl"),
        };
        var result = trainer.Train(cancellationToken);

        var modelDirectory = Directory.CreateDirectory(Path.Combine(context.OutputDirectory, "model")).FullName;
        // Under bfloat16 training the float32 master weights are the result, so the file is always float32.
        File.WriteAllText(Path.Combine(modelDirectory, "config.json"), config.ToJson("float32"));
        using (var scope = NewDisposeScope())
        {
            var cpuWeights = trainer.Weights().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(ScalarType.Float32).cpu().contiguous());
            Safetensors.Save(Path.Combine(modelDirectory, "model.safetensors"), cpuWeights);
        }

        context.Summary["steps"] = result.Steps;
        context.Summary["epochs"] = result.Epochs;
        context.Summary["tokens"] = result.Tokens;
        context.Summary["trained_tokens"] = result.TrainedTokens;
        context.Summary["first_loss"] = Math.Round(result.FirstLoss, 4);
        context.Summary["final_loss"] = Math.Round(result.FinalLoss, 4);
        context.Summary["tokens_per_s"] = result.TokensPerSecond;
        context.Summary["mfu"] = result.Mfu;
        context.Summary["duration_s"] = result.DurationSeconds;
        context.Summary["params"] = result.Parameters;
        File.WriteAllText(Path.Combine(context.OutputDirectory, "summary.json"),
            JsonSerializer.Serialize(context.Summary, JsonText.Indented));
        return Task.CompletedTask;
    }

    public static LlamaConfig BuiltinConfig(BuiltinModelSettings builtin, int vocabSize, int? bosTokenId = null, int? eosTokenId = null, int? padTokenId = null) => new()
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
