using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// A model as a Hugging Face folder: <c>config.json</c> plus <c>model.safetensors</c> (or shards listed by
/// <c>model.safetensors.index.json</c>) with transformers' key names.
/// A tied output head is not written (transformers re-ties it from the embedding on load), so the files match
/// what <c>save_pretrained</c> produces.
/// </summary>
internal static class ModelFolder
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string ShardIndexFile = "model.safetensors.index.json";
    public const string PickleWeightsFile = "pytorch_model.bin";
    public const string TiedHeadKey = "lm_head.weight";

    /// <summary>"float32" or "bfloat16", the names config.json uses for torch_dtype.</summary>
    public static ScalarType ParseDtype(string dtype) => dtype switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => throw new ArgumentException($"dtype '{dtype}' is not supported; use float32 or bfloat16", nameof(dtype)),
    };

    public static string DtypeName(ScalarType type) => type switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => throw new ArgumentException($"dtype {type} is not a weight dtype"),
    };

    /// <summary>
    /// Writes config.json and model.safetensors into <paramref name="directory"/> (created if needed).
    /// </summary>
    public static void Save(LlamaForCausalLM model, string directory, string dtype = "float32")
    {
        var target = ParseDtype(dtype);
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, tensor) in WeightsOf(model))
            weights[name] = tensor.detach().to(target);
        Safetensors.Save(Path.Combine(directory, WeightsFile), weights);
        File.WriteAllText(Path.Combine(directory, ConfigFile), model.Config.ToJson(dtype) + "\n");
    }

    public static LlamaConfig ReadConfig(string directory)
    {
        var path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidModelConfig,
                $"the model folder has no {ConfigFile}", directory), ExitCodes.StageFailed);
        try { return LlamaConfig.FromJson(File.ReadAllText(path), path); }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException
            or InvalidOperationException or FormatException)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidModelConfig,
                $"config.json is not a usable model config: {e.Message}", path), ExitCodes.InvalidInput);
        }
    }

    /// <summary>
    /// Builds the model described by config.json and fills it from model.safetensors (or its shards), strictly:
    /// every weight must be present with its shape and nothing else may be there. Weights are converted to
    /// <paramref name="dtype"/> (float32 when null) and moved to <paramref name="device"/> (CPU when null). The
    /// model is in eval mode.
    /// </summary>
    public static LlamaForCausalLM Load(string directory, ScalarType? dtype = null, Device? device = null)
    {
        var config = ReadConfig(directory);
        var shards = WeightFiles(directory);
        var model = new LlamaForCausalLM(config);
        try
        {
            if (dtype is { } type && type != ScalarType.Float32) model.to(type);
            LoadWeights(model, shards);
            if (device is not null) model.to(device);
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The safetensors files of a model folder: model.safetensors, or the shards model.safetensors.index.json
    /// maps weights to. A folder with only a pickle checkpoint is refused: unpickling can run arbitrary code.
    /// </summary>
    public static IReadOnlyList<string> WeightFiles(string directory)
    {
        var single = Path.Combine(directory, WeightsFile);
        if (File.Exists(single)) return [single];
        var indexPath = Path.Combine(directory, ShardIndexFile);
        if (File.Exists(indexPath))
        {
            System.Text.Json.Nodes.JsonObject? weightMap;
            try
            {
                weightMap = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(indexPath))?["weight_map"]
                    as System.Text.Json.Nodes.JsonObject;
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidShardIndex,
                    $"not valid JSON: {e.Message}", indexPath));
            }
            if (weightMap is null || weightMap.Count == 0)
                throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidShardIndex,
                    "the shard index has no 'weight_map' object", indexPath));
            var files = new List<string>();
            foreach (var (_, value) in weightMap)
            {
                var name = value is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
                if (name is null || name != Path.GetFileName(name))
                    throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidShardIndex,
                        $"weight_map entry '{value}' is not a file name in the model folder", indexPath));
                var shard = Path.Combine(directory, name);
                if (!File.Exists(shard))
                    throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidShardIndex,
                        $"the shard '{name}' listed in weight_map is missing", indexPath));
                if (!files.Contains(shard)) files.Add(shard);
            }
            return files;
        }
        if (File.Exists(Path.Combine(directory, PickleWeightsFile))
            || Directory.EnumerateFiles(directory, "pytorch_model-*.bin").Any())
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.PickleWeightsRefused,
                $"the model folder has only {PickleWeightsFile}, a pickle file, which is refused because loading a " +
                $"pickle can execute arbitrary code; " +
                "convert it once to safetensors in Python: " +
                "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)",
                directory));
        throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModelWeightsNotFound,
            $"the model folder has no {WeightsFile} (nor {ShardIndexFile})", directory));
    }

    /// <summary>Copies the weights of a safetensors file into <paramref name="model"/>, converting dtypes.</summary>
    public static void LoadWeights(LlamaForCausalLM model, string weightsPath) => LoadWeights(model, [weightsPath]);

    /// <summary>
    /// Copies the weights of one or more safetensors files (shards) into <paramref name="model"/>, converting dtypes.
    /// </summary>
    public static void LoadWeights(LlamaForCausalLM model, IReadOnlyList<string> weightFiles)
    {
        var expected = WeightsOf(model).ToDictionary(p => p.Name, p => p.Tensor, StringComparer.Ordinal);
        var tied = model.Config.TieWordEmbeddings;
        var where = weightFiles.Count == 1 ? weightFiles[0] : Path.GetDirectoryName(weightFiles[0])!;

        var problems = new List<string>();
        var inFiles = new Dictionary<string, (SafetensorsEntry Entry, string File)>(StringComparer.Ordinal);
        foreach (var file in weightFiles)
            foreach (var entry in Safetensors.ReadHeader(file).Tensors)
                if (!inFiles.TryAdd(entry.Name, (entry, file)))
                    problems.Add($"'{entry.Name}' is in both {Path.GetFileName(inFiles[entry.Name].File)} and " +
                        $"{Path.GetFileName(file)}");
        foreach (var (name, tensor) in expected)
        {
            if (!inFiles.TryGetValue(name, out var found)) problems.Add($"missing '{name}'");
            else if (!found.Entry.Shape.SequenceEqual(tensor.shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", found.Entry.Shape)}] in the file but the model " +
                    $"needs [{string.Join(", ", tensor.shape)}]");
            else if (found.Entry.ScalarType
                is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
                problems.Add($"'{name}' is stored as {found.Entry.Dtype}, not as floating point");
        }
        foreach (var name in inFiles.Keys)
            if (!expected.ContainsKey(name) && !(tied && name == TiedHeadKey) && !IsDerivedBuffer(name))
                problems.Add($"unexpected '{name}'");
        if (problems.Count > 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.WeightsDoNotFitConfig,
                $"the weights do not fit the model in config.json ({problems.Count} problem(s)): " +
                $"{string.Join("; ", problems.Take(20))}{(problems.Count > 20 ? "; ..." : "")}",
                where), ExitCodes.InvalidInput);

        // One shard at a time, so loading never holds more than one shard besides the model.
        foreach (var file in weightFiles)
        {
            var loaded = Safetensors.Load(file, name => expected.ContainsKey(name) && inFiles[name].File == file);
            try
            {
                using var _ = no_grad();
                foreach (var (name, source) in loaded) expected[name].copy_(source);
            }
            finally
            {
                foreach (var t in loaded.Values) t.Dispose();
            }
        }
    }

    // Older Llama checkpoints store RoPE's inverse frequencies as a buffer; they are recomputed from config.json.
    private static bool IsDerivedBuffer(string name) => name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal);

    /// <summary>
    /// The tensors that make up a checkpoint: parameters and persistent buffers under transformers' names, without
    /// the tied head (which shares the embedding's storage).
    /// </summary>
    public static IEnumerable<(string Name, Tensor Tensor)> WeightsOf(LlamaForCausalLM model)
    {
        foreach (var (name, tensor) in model.state_dict())
        {
            if (model.Config.TieWordEmbeddings && name == TiedHeadKey) continue;
            yield return (name, tensor);
        }
    }
}
