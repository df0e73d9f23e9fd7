using FineTune.Core;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Formats;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>
/// Writes the trained model as one self-contained Hugging Face folder: transformers' <c>from_pretrained</c>, the
/// llama.cpp converter and <c>dotnet finetune chat</c> all read it as it is.
/// </summary>
internal sealed class ExportStage(Func<string, IChatTokenizer>? loadTokenizer = null) : Stage<ExportSettings>
{
    public const string GenerationConfigFile = "generation_config.json";

    private readonly Func<string, IChatTokenizer> _loadTokenizer = loadTokenizer ?? TokenizerFolder.Load;

    public override string Name => "export";
    public override int ImplementationVersion => 1;
    public override IReadOnlyList<string> DependsOn { get; } = ["train", "tokenize"];

    protected override Task RunAsync(StageContext context, ExportSettings settings, CancellationToken cancellationToken)
    {
        var modelDirectory = Path.Combine(context.Input("train"), "model");
        var tokenizerDirectory = Path.Combine(context.Input("tokenize"), "tokenizer");
        var output = context.OutputDirectory;

        foreach (var file in TokenizerFolder.Files)
        {
            var source = Path.Combine(tokenizerDirectory, file);
            if (!File.Exists(source))
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ExportTokenizerFileMissing,
                    $"the tokenizer folder has no {file}; re-run the tokenize stage", tokenizerDirectory),
                    ExitCodes.StageFailed);
            File.Copy(source, Path.Combine(output, file));
        }
        var tokenizer = _loadTokenizer(tokenizerDirectory);

        var config = WithTokenIds(ModelFolder.ReadConfig(modelDirectory), tokenizer);
        File.WriteAllText(Path.Combine(output, ModelFolder.ConfigFile), config.ToJson(settings.Dtype) + "\n");
        var parameters = ConvertWeights(Path.Combine(modelDirectory, ModelFolder.WeightsFile),
            Path.Combine(output, ModelFolder.WeightsFile),
            ModelFolder.ParseDtype(settings.Dtype));
        File.WriteAllText(Path.Combine(output, GenerationConfigFile),
            GenerationConfig(tokenizer, config, settings.MaxNewTokens) + "\n");

        // A LoRA run also ships its PEFT adapter (adapter_config.json + adapter_model.safetensors) for the base model.
        var adapter = Path.Combine(context.Input("train"), "adapter");
        if (Directory.Exists(adapter))
        {
            var adapterOutput = Directory.CreateDirectory(Path.Combine(output, "adapter")).FullName;
            foreach (var file in Directory.GetFiles(adapter))
                File.Copy(file, Path.Combine(adapterOutput, Path.GetFileName(file)));
        }

        var files = Directory.GetFiles(output);
        context.Summary["files"] = files.Length;
        context.Summary["bytes"] = files.Sum(f => new FileInfo(f).Length);
        context.Summary["parameters"] = parameters;
        context.Summary["dtype"] = settings.Dtype;
        context.Log.Info($"exported {parameters:N0} parameters as {settings.Dtype} ({files.Length} files)");
        return Task.CompletedTask;
    }

    /// <summary>
    /// Copies a safetensors file, converting floating-point tensors to <paramref name="dtype"/>; each source tensor
    /// is freed once converted, so the peak is the converted model plus one tensor. Returns the element count,
    /// which is the parameter count.
    /// </summary>
    public static long ConvertWeights(string source, string destination, ScalarType dtype)
    {
        var header = Safetensors.ReadHeader(source);
        var converted = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in header.Tensors)
            {
                var tensor = Safetensors.Load(source, name => name == entry.Name)[entry.Name];
                converted[entry.Name] = tensor.is_floating_point() && tensor.dtype != dtype
                    ? Swap(tensor, tensor.to(dtype)) : tensor;
            }
            Safetensors.Save(destination, converted);
            return converted.Values.Sum(t => t.numel());
        }
        finally
        {
            foreach (var t in converted.Values) t.Dispose();
        }

        static Tensor Swap(Tensor old, Tensor replacement) { old.Dispose(); return replacement; }
    }

    // Hugging Face tools read the special ids from config.json as well as from the tokenizer.
    private static LlamaConfig WithTokenIds(LlamaConfig c, IChatTokenizer tokenizer) => c with
    {
        EosTokenId = c.EosTokenId ?? (tokenizer.StopTokenIds.Count > 0 ? tokenizer.StopTokenIds[0] : null),
        PadTokenId = c.PadTokenId ?? tokenizer.PadTokenId,
    };

    public static string GenerationConfig(IChatTokenizer tokenizer, LlamaConfig config, int maxNewTokens)
    {
        JsonNode eos = tokenizer.StopTokenIds.Count == 1
            ? JsonValue.Create(tokenizer.StopTokenIds[0])
            : new JsonArray(tokenizer.StopTokenIds.Select(id => (JsonNode)JsonValue.Create(id)).ToArray());
        var json = new JsonObject
        {
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = eos,
            ["pad_token_id"] = tokenizer.PadTokenId,
            ["do_sample"] = false,
            ["max_new_tokens"] = maxNewTokens,
        };
        return json.ToJsonString(JsonText.Indented);
    }
}
