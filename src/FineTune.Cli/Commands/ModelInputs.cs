using FineTune.Cli.Output;
using FineTune.Core;
using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;
using System.CommandLine;
using FineTune.Core.Tokenization;
using FineTune.Inference;
using FineTune.Torch.Chat;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using static FineTune.Core.Stages.StageLogExtensions;

namespace FineTune.Cli.Commands;

/// <summary>What <c>score</c> and <c>generate</c> share: a model folder, its tokenizer, and token ids from the command
/// line.</summary>
internal static class ModelInputs
{
    public const string ArgumentCode = DiagnosticCodes.InvalidModelCommandArguments;

    /// <summary>Where a command's Hub download shows its progress: stderr, as a stage's would.</summary>
    public static IProgress<StageProgress> DownloadProgress(CliConsole console) =>
        new ConsoleObserver(console.Error, console.Error, console.Interactive).LogFor("download").AsProgress();

    /// <summary>--adapter DIR, which chat, generate, score and serve share.</summary>
    public static Option<string?> AdapterOption() => new("--adapter")
    {
        Description = "A PEFT adapter folder (adapter_config.json, adapter_model.safetensors) to apply, unmerged, " +
            "on the model. An adapter folder can also be given as the model: its base_model_name_or_path is loaded.",
    };

    /// <summary>The model folder and adapter folder of a command's model argument and --adapter; a Hub id is
    /// downloaded with progress on stderr and stops on Ctrl+C.</summary>
    public static ModelLocation Locate(ParseResult parse, Argument<string> model, Option<string?> adapter,
        CliConsole console, CancellationToken cancellationToken) =>
        ModelLocator.Locate(parse.GetValue(model)!, parse.GetValue(adapter), DownloadProgress(console),
            cancellationToken);

    /// <summary>The model with its adapter applied (unmerged), when the location has one.</summary>
    public static LlamaForCausalLM LoadModel(ModelLocation location)
    {
        var model = LoadModel(location.ModelDirectory);
        if (location.AdapterDirectory is not { } adapter) return model;
        try { LoraAdapter.LoadAdapter(model, adapter); }
        catch
        {
            model.Dispose();
            throw;
        }
        return model;
    }

    /// <summary>The model in float32 on the CPU. Whatever is wrong with the folder the user named is invalid input
    /// (exit 2).</summary>
    public static LlamaForCausalLM LoadModel(string folder)
    {
        try { return ModelFolder.Load(folder); }
        catch (FineTuneException e) when (e.ExitCode != ExitCodes.InvalidInput)
        {
            throw new FineTuneException(e.Diagnostics, ExitCodes.InvalidInput);
        }
    }

    /// <summary>The folder's tokenizer; required when text must be encoded, otherwise null when the folder has
    /// none.</summary>
    public static IChatTokenizer? LoadTokenizer(string folder, bool required, string why)
    {
        if (!File.Exists(Path.Combine(folder, ChatTokenizer.TokenizerJsonFile)))
            return required
                ? throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizerRequired,
                    $"the model folder has no {ChatTokenizer.TokenizerJsonFile}, needed {why}; give token ids with " +
                    $"--ids instead", folder))
                : null;
        return TokenizerFolder.Load(folder);
    }

    /// <summary>"1,2,3" (spaces allowed) to ids, each checked against the model's vocabulary.</summary>
    public static List<int> ParseIds(string text, int vocabSize)
    {
        var ids = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out var id))
                throw new FineTuneException(ArgumentCode,
                    $"--ids: '{part}' is not a token id; give comma-separated integers such as --ids 1,2,3");
            if (id < 0 || id >= vocabSize)
                throw new FineTuneException(ArgumentCode,
                    $"--ids: token id {id} is outside the model's vocabulary (0..{vocabSize - 1})");
            ids.Add(id);
        }
        return ids;
    }

    /// <summary>The special tokens a tokenizer's post-processor puts before text when asked to (Llama's BOS; none for
    /// Qwen).</summary>
    public static IReadOnlyList<int> SpecialPrefix(IChatTokenizer tokenizer) =>
        tokenizer is ChatTokenizer chat ? chat.Tokenizer.BosIds : [];

    public static void CheckVocabulary(IReadOnlyList<int> ids, int vocabSize, string folder)
    {
        if (ids.FirstOrDefault(id => id >= vocabSize, -1) is var outside and >= 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizerModelMismatch,
                $"the tokenizer produced id {outside} but the model has only {vocabSize} tokens; the tokenizer and " +
                    $"weights come from different models", folder));
    }
}
