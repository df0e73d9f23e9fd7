using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Fakes;

internal static class TinyModels
{
    public static LlamaConfig Config(bool tied = false, int layers = 2) => new()
    {
        VocabSize = 260,
        HiddenSize = 32,
        IntermediateSize = 48,
        NumHiddenLayers = layers,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 256,
        TieWordEmbeddings = tied,
    };

    public static LlamaForCausalLM Create(bool tied = false, long seed = 3, int layers = 2)
    {
        var model = new LlamaForCausalLM(Config(tied, layers));
        // The default init is too flat for greedy decoding to pick varied tokens; a larger spread makes the tests bite.
        model.InitializeWeights(seed);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (!name.EndsWith("norm.weight")) p.mul_(10);
        model.eval();
        return model;
    }

    public static Tensor LogitsOf(LlamaForCausalLM model, long[] ids)
    {
        using var _ = no_grad();
        return model.Logits(model.Hidden(tensor(ids, [1, ids.Length]))).squeeze(0);
    }
}

internal sealed class RecordingLog : IStageLog
{
    public List<string> Lines { get; } = [];
    public List<StageProgress> Progress { get; } = [];
    public Action<StageProgress>? OnProgress { get; set; }
    public void Info(string message) => Lines.Add("info: " + message);
    public void Warning(string message) => Lines.Add("warning: " + message);
    void IStageLog.Progress(StageProgress progress)
    {
        Progress.Add(progress);
        OnProgress?.Invoke(progress);
    }
}

internal static class Contexts
{
    public static StageContext For(string name, PipelineDefinition pipeline, string root, IReadOnlyDictionary<string, string> inputs, RecordingLog log)
    {
        var output = Directory.CreateDirectory(Path.Combine(root, name + "-out")).FullName;
        var work = Directory.CreateDirectory(Path.Combine(root, name + "-work")).FullName;
        return new StageContext
        {
            Pipeline = pipeline,
            PipelineDirectory = root,
            OutputDirectory = output,
            InputDirectories = inputs,
            WorkDirectory = work,
            Log = log,
            Environment = new ComputeEnvironment("cpu", "test", 1),
            Name = name,
        };
    }
}
