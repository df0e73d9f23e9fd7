using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;
using FineTune.Core.Pipeline;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;

namespace FineTune.Inference;

/// <summary>Where a model's files are: the base folder, and the PEFT adapter folder to apply on it (or null).</summary>
internal sealed record ModelLocation(string ModelDirectory, string? AdapterDirectory, string DefaultModelId);

/// <summary>
/// Turns what a user names (a model folder, a Hub id, a PEFT adapter folder, or a pipeline file whose export ran)
/// into folders; what <c>chat</c>, <c>serve</c> and <see cref="FineTunedChatClient"/> share.
/// </summary>
internal static class ModelLocator
{
    /// <summary>A Hub id is downloaded (or, offline, found in the cache), reporting to <paramref name="progress"/>
    /// and stopping on <paramref name="cancellationToken"/>.</summary>
    public static ModelLocation Locate(string modelOrPipeline, string? adapterDirectory = null,
        IProgress<StageProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var directory = IsPipelineFile(modelOrPipeline)
            ? PipelineExport(modelOrPipeline)
            : Folder(modelOrPipeline, progress, cancellationToken);
        var id = DefaultModelId(modelOrPipeline);
        if (adapterDirectory is not null)
        {
            if (!Directory.Exists(adapterDirectory))
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.AdapterFolderNotFound,
                    "adapter folder not found; give a PEFT adapter folder (adapter_config.json and " +
                    "adapter_model.safetensors)", adapterDirectory));
            return new ModelLocation(directory, Path.GetFullPath(adapterDirectory), id);
        }
        // A PEFT folder on its own (the export's adapter format): the base it names, with it applied.
        if (!File.Exists(Path.Combine(directory, ModelFolder.ConfigFile))
            && File.Exists(Path.Combine(directory, LoraAdapter.ConfigFile)))
            return new ModelLocation(Folder(BaseModelOf(directory), progress, cancellationToken), directory, id);
        return new ModelLocation(directory, null, id);
    }

    public static bool IsPipelineFile(string argument) =>
        argument.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)
        || argument.EndsWith(".yml", StringComparison.OrdinalIgnoreCase);

    /// <summary>A folder as given, or a Hub model id downloaded into (or, offline, found in) the Hugging Face
    /// cache: every file, or those matching <paramref name="patterns"/>.</summary>
    public static string Folder(string argument, IProgress<StageProgress>? progress = null,
        CancellationToken cancellationToken = default, IReadOnlyList<string>? patterns = null) =>
        ModelSource.ResolveAsync(argument, HubOptions.FromEnvironment(), progress, cancellationToken, patterns)
            .GetAwaiter().GetResult();

    /// <summary>The committed export of a pipeline file.</summary>
    public static string PipelineExport(string pipelineFile)
    {
        if (!File.Exists(pipelineFile)) throw new FineTuneException(DiagnosticCodes.ChatTargetNotFound,
            $"pipeline file '{pipelineFile}' does not exist");
        var pipeline = PipelineLoader.LoadOrThrow(pipelineFile);
        var locked = LockFile.Read(LockFile.PathFor(pipeline.FilePath));
        if (!locked.Stages.TryGetValue("export", out var export))
            throw new FineTuneException(DiagnosticCodes.ExportNotAvailable,
                $"{pipelineFile}: the export stage has not run yet; run 'dotnet finetune run {pipelineFile}' first");
        var directory = new StageStore(pipeline.StorePath).OutputDirectory("export", export.Key);
        return Directory.Exists(directory)
            ? directory
            : throw new FineTuneException(DiagnosticCodes.ExportNotAvailable,
                $"{pipelineFile}: the export recorded in the lock file is not in the store (was it " +
                $"garbage-collected?); run the pipeline again");
    }

    /// <summary>The name a server reports for the model: the pipeline file's or the folder's name.</summary>
    private static string DefaultModelId(string argument)
    {
        if (IsPipelineFile(argument)) return Path.GetFileNameWithoutExtension(argument);
        if (!Directory.Exists(argument)) return argument; // a Hub id such as Qwen/Qwen2.5-0.5B-Instruct
        return Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(argument)));
    }

    /// <summary>adapter_config.json's base_model_name_or_path: a Hub id, or a folder (relative to the adapter's
    /// folder when it is not one from here).</summary>
    private static string BaseModelOf(string adapterDirectory)
    {
        var path = Path.Combine(adapterDirectory, LoraAdapter.ConfigFile);
        string? name;
        try { name = JsonNode.Parse(File.ReadAllText(path))?["base_model_name_or_path"]?.GetValue<string>(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidAdapterConfig,
                $"{LoraAdapter.ConfigFile} is not valid JSON: {e.Message}", path));
        }
        if (string.IsNullOrWhiteSpace(name))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.AdapterBaseModelUnknown,
                "the adapter names no base model (base_model_name_or_path); give the base model and the adapter " +
                "with --adapter", path));
        var besideAdapter = Path.Combine(adapterDirectory, name);
        return !Directory.Exists(name) && Directory.Exists(besideAdapter) ? besideAdapter : name;
    }
}
