using FineTune.Core.Tokenization;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Inference.Tests;

/// <summary>
/// A model folder in the export layout: a tiny random Llama with GPT-2's tokenizer and the ChatML template, plus a
/// PEFT adapter for it and the same adapter merged into a second folder. Built once per test class.
/// </summary>
public sealed class TinyExport : IDisposable
{
    public const int MaxNewTokens = 12;

    private readonly string _root = Directory.CreateTempSubdirectory("ft-inference-").FullName;

    public string ModelDirectory => Path.Combine(_root, "model");
    public string AdapterDirectory => Path.Combine(_root, "adapter");
    public string MergedDirectory => Path.Combine(_root, "merged");

    public TinyExport()
    {
        var tokenizer = ChatTokenizer.LoadGpt2();
        var config = new LlamaConfig
        {
            VocabSize = tokenizer.VocabSize, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 1,
            NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128,
        };
        foreach (var directory in new[] { ModelDirectory, MergedDirectory })
        {
            tokenizer.WriteFiles(directory, modelMaxLength: config.MaxPositionEmbeddings);
            File.WriteAllText(Path.Combine(directory, "generation_config.json"),
                $$"""{"max_new_tokens": {{MaxNewTokens}}}""");
        }

        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(7);
        // The default init is too flat for greedy decoding to pick varied tokens; a larger spread makes tests bite.
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (!name.EndsWith("norm.weight", StringComparison.Ordinal)) p.mul_(10);
        ModelFolder.Save(model, ModelDirectory);

        var lora = new LoraOptions { R = 4, Alpha = 8, TargetModules = ["q_proj", "v_proj", "down_proj"] };
        var applied = LoraAdapter.Apply(model, lora);
        using (no_grad())
            foreach (var layer in applied.Layers.Values) layer.B.normal_(0, 2);
        LoraAdapter.SaveAdapter(model, lora, AdapterDirectory, baseModelNameOrPath: ModelDirectory);
        LoraAdapter.MergeAndUnload(model);
        ModelFolder.Save(model, MergedDirectory);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
