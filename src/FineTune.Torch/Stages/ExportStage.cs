using FineTune.Core;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Formats;
using FineTune.Torch.Formats.Gguf;
using FineTune.Torch.Formats.Ollama;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>
/// Writes the trained model in the formats of <c>export.formats</c>: <c>hf</c>, a self-contained Hugging Face folder at
/// the top level (transformers' <c>from_pretrained</c>, the llama.cpp converter and <c>dotnet finetune chat</c> read
/// it as it is); <c>adapter</c>, PEFT's adapter folder <c>adapter/</c>; <c>gguf</c>, <c>gguf/model-TYPE.gguf</c>;
/// <c>ollama</c>, <c>gguf/Modelfile</c> beside it. The runner commits the output folder only when every format is
/// written, so an export is complete in the store or absent.
/// </summary>
internal sealed class ExportStage(Func<string, IChatTokenizer>? loadTokenizer = null) : Stage<ExportSettings>
{
    public const string GenerationConfigFile = "generation_config.json";
    public const string AdapterFolder = "adapter";
    public const string GgufFolder = "gguf";

    private readonly Func<string, IChatTokenizer> _loadTokenizer = loadTokenizer ?? TokenizerFolder.Load;

    public override string Name => "export";
    public override int ImplementationVersion => 2;
    public override IReadOnlyList<string> DependsOn { get; } = ["train", "tokenize"];

    protected override Task RunAsync(StageContext context, ExportSettings settings, CancellationToken cancellationToken)
    {
        var modelDirectory = Path.Combine(context.Input("train"), "model");
        var tokenizerDirectory = Path.Combine(context.Input("tokenize"), "tokenizer");
        var output = context.OutputDirectory;
        var adapter = Path.Combine(context.Input("train"), "adapter");
        var sourceConfig = ModelFolder.ReadConfig(modelDirectory);
        foreach (var file in TokenizerFolder.Files)
        {
            if (!File.Exists(Path.Combine(tokenizerDirectory, file)))
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ExportTokenizerFileMissing,
                    $"the tokenizer folder has no {file}; re-run the tokenize stage", tokenizerDirectory),
                    ExitCodes.StageFailed);
        }
        cancellationToken.ThrowIfCancellationRequested();
        var tokenizer = _loadTokenizer(tokenizerDirectory);
        var checkedExport = CheckBeforeWriting(context, settings, sourceConfig, adapter, modelDirectory,
            tokenizerDirectory, tokenizer, cancellationToken);
        var config = WithTokenIds(sourceConfig, tokenizer);

        long parameters = 0;
        if (settings.Writes("hf"))
        {
            foreach (var file in TokenizerFolder.Files)
                File.Copy(Path.Combine(tokenizerDirectory, file), Path.Combine(output, file));
            File.WriteAllText(Path.Combine(output, ModelFolder.ConfigFile), config.ToJson(settings.Dtype) + "\n");
            ByteSize.TryParse(settings.MaxShardSize, out var maxShardBytes);
            parameters = SafetensorsShards.Write(ModelFolder.WeightFiles(modelDirectory), output,
                ModelFolder.ParseDtype(settings.Dtype), maxShardBytes, cancellationToken);
            File.WriteAllText(Path.Combine(output, GenerationConfigFile),
                GenerationConfig(tokenizer, config, settings.MaxNewTokens) + "\n");
            context.Summary["dtype"] = settings.Dtype;
        }
        if (settings.Writes("adapter"))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (baseModel, revision) = BaseModelOf(context);
            PeftAdapterExport.Write(adapter, Path.Combine(output, AdapterFolder), baseModel, revision);
        }

        if (checkedExport.Gguf is { } gguf)
        {
            var folder = Directory.CreateDirectory(Path.Combine(output, GgufFolder)).FullName;
            var result = gguf.Write(Path.Combine(folder, GgufModelExport.FileName(settings.GgufType)));
            if (result.Fallbacks.Count > 0)
                context.Log.Warning($"{result.Fallbacks.Count} tensor(s) kept as F16 instead of Q8_0, their rows " +
                    $"not being a multiple of {Q8_0.BlockSize} values (as llama.cpp does): " +
                    string.Join(", ", result.Fallbacks));
            context.Summary["gguf_type"] = settings.GgufType;
            context.Summary["gguf_tensors"] = result.TensorCount;
            if (settings.Writes("ollama"))
                File.WriteAllText(Path.Combine(folder, OllamaModelfile.FileName), OllamaModelfile.Write(
                    Path.GetFileName(result.Path), checkedExport.Ollama, checkedExport.TrainingTemplate,
                    OllamaModelfile.StopTexts(tokenizer), context.Pipeline.Stages.Evaluate));
        }

        // The last look before the runner commits: a Ctrl+C during the writes above commits nothing.
        cancellationToken.ThrowIfCancellationRequested();
        var files = Directory.GetFiles(output, "*", SearchOption.AllDirectories);
        context.Summary["formats"] = string.Join(",", ExportSettings.FormatNames.Where(settings.Writes));
        context.Summary["files"] = files.Length;
        context.Summary["bytes"] = files.Sum(f => new FileInfo(f).Length);
        if (parameters > 0) context.Summary["parameters"] = parameters;
        context.Log.Info($"exported {string.Join(", ", ExportSettings.FormatNames.Where(settings.Writes))}" +
            (parameters > 0 ? $": {parameters:N0} parameters as {settings.Dtype}" : "") + $" ({files.Length} files)");
        return Task.CompletedTask;
    }

    /// <summary>The GGUF file prepared by the checks (null: not asked for), and the Ollama template to write.</summary>
    private sealed record CheckedExport(PreparedGguf? Gguf, OllamaModelfile.Match? Ollama, string TrainingTemplate);

    /// <summary>
    /// What only the trained model and its tokenizer show (the architecture, whether there is an adapter, whether the
    /// tokenizer and chat template fit GGUF and Ollama), checked before any file is written; the pipeline-level checks
    /// already ran at validate time. The GGUF file is prepared here, so its tokenizer is read once.
    /// </summary>
    private static CheckedExport CheckBeforeWriting(StageContext context, ExportSettings settings, LlamaConfig config,
        string adapter, string modelDirectory, string tokenizerDirectory, IChatTokenizer tokenizer,
        CancellationToken cancellationToken)
    {
        var formats = context.Pipeline.Locate("stages.export.formats");
        if (settings.Writes("gguf") && !ExportChecks.GgufArchitectures.Contains(config.ModelType))
            throw new FineTuneException(formats.Error(DiagnosticCodes.GgufUnsupportedArchitecture,
                $"export: the GGUF writer supports {string.Join(", ", ExportChecks.GgufArchitectures)} models, but " +
                $"the trained model is a {config.ModelType} model; drop gguf and ollama from formats"),
                ExitCodes.InvalidInput);
        if (settings.Writes("adapter") && !Directory.Exists(adapter))
            throw new FineTuneException(formats.Error(DiagnosticCodes.ExportAdapterMissing,
                "export: the train output has no adapter folder; the adapter format needs train.method: lora"),
                ExitCodes.InvalidInput);
        PreparedGguf? gguf = null;
        if (settings.Writes("gguf"))
        {
            try
            {
                gguf = GgufModelExport.Prepare(modelDirectory, tokenizerDirectory,
                    GgufModelExport.ParseType(settings.GgufType), context.Pipeline.Name, tokenizer.StopTokenIds,
                    cancellationToken);
            }
            catch (FineTuneException e) when (e.Diagnostics is [{ Code: DiagnosticCodes.GgufUnsupportedTokenizer } why])
            {
                throw new FineTuneException(formats.Error(DiagnosticCodes.GgufUnsupportedTokenizer,
                    $"export: {why.Message} ({why.File}); drop gguf and ollama from formats"), ExitCodes.InvalidInput);
            }
        }
        if (!settings.Writes("ollama")) return new CheckedExport(gguf, null, "");

        var chat = ChatTokenizer.LoadFolder(tokenizerDirectory);
        var match = OllamaModelfile.Find(messages => chat.Render(messages, addGenerationPrompt: true), chat.BosToken);
        if (match is null && !settings.OllamaFallback)
            throw new FineTuneException(formats.Error(DiagnosticCodes.OllamaTemplateUnsupported,
                ExportChecks.OllamaTemplateProblem(chat.Template.Origin)), ExitCodes.InvalidInput);
        if (match is null)
            context.Log.Warning($"{DiagnosticCodes.OllamaTemplateFallback}: the chat template ({chat.Template.Origin}) " +
                $"renders differently from every Ollama template this tool knows " +
                $"({string.Join(", ", OllamaModelfile.Known.Select(k => k.Name))}); the Modelfile has a ChatML " +
                "TEMPLATE to edit, with the training template beside it as comments");
        else context.Log.Info($"Ollama TEMPLATE: {match.Template.Name}" +
            (match.DefaultSystem is null ? "" : ", with the template's default system message as SYSTEM"));
        return new CheckedExport(gguf, match, chat.Template.Source);
    }

    /// <summary>The base model as PEFT names it: the Hub id and the commit trained on, or the folder given.</summary>
    private static (string? Name, string? Revision) BaseModelOf(StageContext context)
    {
        var train = context.Pipeline.Stages.Train;
        if (train.IsBuiltin) return (null, null);
        var location = ModelSetting.Resolve(context, train.Model, "stages.train.model", DiagnosticCodes.ModelNotFound,
            "use a Hugging Face layout folder or a model id");
        if (location.HubCommit is null) return (train.Model, null);
        var at = train.Model.LastIndexOf('@');
        return (at > 0 ? train.Model[..at] : train.Model, location.HubCommit);
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
