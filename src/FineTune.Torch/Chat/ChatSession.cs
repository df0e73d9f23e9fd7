using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using static TorchSharp.torch;

namespace FineTune.Torch.Chat;

/// <summary>
/// A model folder in the export layout (weights and tokenizer side by side) ready to answer prompts; what
/// <c>dotnet finetune chat MODEL_DIR</c> runs.
/// </summary>
internal sealed class ChatSession : IDisposable
{
    public const int FallbackMaxNewTokens = 256;

    private static readonly string[] RequiredFiles =
        [ModelFolder.ConfigFile, ChatTokenizer.TokenizerJsonFile, ChatTokenizer.TokenizerConfigFile];

    public LlamaForCausalLM Model { get; }
    public IChatTokenizer Tokenizer { get; }

    /// <summary>max_new_tokens of generation_config.json, or <see cref="FallbackMaxNewTokens"/>.</summary>
    public int DefaultMaxNewTokens { get; }

    private ChatSession(LlamaForCausalLM model, IChatTokenizer tokenizer, int defaultMaxNewTokens)
    {
        Model = model;
        Tokenizer = tokenizer;
        DefaultMaxNewTokens = defaultMaxNewTokens;
    }

    /// <param name="loadTokenizer">How to read the tokenizer files (tests pass a fake); the real loader by
    /// default.</param>
    public static ChatSession Open(string modelDirectory, Device? device = null,
        Func<string, IChatTokenizer>? loadTokenizer = null)
    {
        if (!Directory.Exists(modelDirectory))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ChatTargetNotFound,
                "model folder not found; give the export stage's output folder (or its copy_to folder)",
                modelDirectory));
        var missing = RequiredFiles.Where(f => !File.Exists(Path.Combine(modelDirectory, f))).ToList();
        if (missing.Count > 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ChatModelFilesMissing,
                $"the model folder lacks {string.Join(", ", missing)}; a chat model folder holds the files the " +
                $"export stage writes " +
                $"({string.Join(", ", RequiredFiles)}, {ModelFolder.WeightsFile})", modelDirectory));
        ModelFolder.WeightFiles(modelDirectory); // model.safetensors or shards, before the tokenizer takes its time

        var tokenizer = (loadTokenizer ?? TokenizerFolder.Load)(modelDirectory);
        var model = ModelFolder.Load(modelDirectory, device: device);
        if (tokenizer.VocabSize > model.Config.VocabSize)
        {
            model.Dispose();
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizerModelMismatch,
                $"the tokenizer has {tokenizer.VocabSize} tokens but the model only {model.Config.VocabSize}; the " +
                $"files come from different runs", modelDirectory));
        }
        return new ChatSession(model, tokenizer, ReadMaxNewTokens(modelDirectory));
    }

    /// <summary>Answers one user message (greedy unless <paramref name="options"/> sets a temperature).</summary>
    public GenerationResult Answer(string prompt, GenerationOptions? options = null, Action<string>? onText = null,
        CancellationToken cancellationToken = default)
        => Reply([new ChatMessage("user", prompt)], options, onText, cancellationToken);

    /// <summary>Continues a conversation (system, user and assistant turns) with the assistant's next turn.</summary>
    public GenerationResult Reply(IReadOnlyList<ChatMessage> conversation, GenerationOptions? options = null,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        var promptIds = Tokenizer.EncodeConversation(conversation, addGenerationPrompt: true);
        options ??= new GenerationOptions(MaxNewTokens: DefaultMaxNewTokens);
        return new TextGenerator(Model, Tokenizer).Generate(promptIds, options, onText, cancellationToken);
    }

    private static int ReadMaxNewTokens(string directory)
    {
        var path = Path.Combine(directory, ExportStage.GenerationConfigFile);
        if (!File.Exists(path)) return FallbackMaxNewTokens;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path))?["max_new_tokens"] is JsonValue v
                && v.TryGetValue<int>(out var n) && n > 0 ? n : FallbackMaxNewTokens;
        }
        catch (JsonException) { return FallbackMaxNewTokens; }
    }

    public void Dispose() => Model.Dispose();
}
