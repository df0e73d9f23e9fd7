using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.TestKit;
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

internal static class Contexts
{
    /// <summary>A context for stage <paramref name="name"/> on the CPU, with its folders under <paramref name="root"/>.</summary>
    public static StageContext For(string name, PipelineDefinition pipeline, string root, IReadOnlyDictionary<string, string> inputs, RecordingLog log) =>
        StageContexts.For(pipeline, name, Path.Combine(root, name + "-out"), inputs, log, new ComputeEnvironment("cpu", "test", 1),
            pipelineDirectory: root);
}
