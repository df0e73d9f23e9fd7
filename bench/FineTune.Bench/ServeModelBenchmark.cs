using FineTune.Torch.Models;

namespace FineTune.Bench;

/// <summary>
/// Writes the model the serve benchmark runs on: the huanhuan CPU job's shape (256 hidden, 4 layers, 8/4 heads,
/// 688 intermediate, tied embeddings) with random weights, beside a copy of a tokenizer folder (an export
/// folder, with its config.json for the vocabulary and special tokens). Speed does not depend on what the weights learned, only on their shape.
/// </summary>
internal sealed class ServeModelBenchmark : IBenchmark
{
    public string Name => "serve-model";
    public string Description => "write a random model of the huanhuan CPU job's shape (args: OUT_DIR TOKENIZER_DIR)";

    public int Run(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: serve-model OUT_DIR TOKENIZER_DIR");
            return 2;
        }
        Directory.CreateDirectory(args[0]);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
            File.Copy(Path.Combine(args[1], file), Path.Combine(args[0], file), overwrite: true);
        var configPath = Path.Combine(args[1], "config.json");
        var tokenizerConfig = LlamaConfig.FromJson(File.ReadAllText(configPath), configPath);
        using var model = new LlamaForCausalLM(tokenizerConfig with
        {
            HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 4, HeadDim = 32,
            IntermediateSize = 688, TieWordEmbeddings = true,
        });
        model.InitializeWeights(42);
        ModelFolder.Save(model, args[0]);
        Console.WriteLine($"wrote {args[0]}");
        return 0;
    }
}
