using FineTune.Core.Diagnostics;
using FineTune.Torch.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// A model as a Hugging Face folder: <c>config.json</c> plus <c>model.safetensors</c> with transformers' key names.
/// A tied output head is not written (transformers re-ties it from the embedding on load), so the files match
/// what <c>save_pretrained</c> produces.
/// </summary>
public static class ModelFolder
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
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

    /// <summary>Writes config.json and model.safetensors into <paramref name="directory"/> (created if needed).</summary>
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
            throw new FineTuneException(Diagnostic.Error("FT0520", $"the model folder has no {ConfigFile}", directory), ExitCodes.StageFailed);
        try { return LlamaConfig.FromJson(File.ReadAllText(path), path); }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            throw new FineTuneException(Diagnostic.Error("FT0520", $"config.json is not a usable Llama config: {e.Message}", path), ExitCodes.StageFailed);
        }
    }

    /// <summary>
    /// Builds the model described by config.json and fills it from model.safetensors, strictly: every weight must
    /// be present with its shape and nothing else may be there. Weights are converted to <paramref name="dtype"/>
    /// (float32 when null) and moved to <paramref name="device"/> (CPU when null). The model is in eval mode.
    /// </summary>
    public static LlamaForCausalLM Load(string directory, ScalarType? dtype = null, Device? device = null)
    {
        var config = ReadConfig(directory);
        var weightsPath = Path.Combine(directory, WeightsFile);
        if (!File.Exists(weightsPath))
            throw new FineTuneException(Diagnostic.Error("FT0521", $"the model folder has no {WeightsFile}", directory), ExitCodes.StageFailed);

        var model = new LlamaForCausalLM(config);
        try
        {
            if (dtype is { } type && type != ScalarType.Float32) model.to(type);
            LoadWeights(model, weightsPath);
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

    /// <summary>Copies the weights of a safetensors file into <paramref name="model"/>, converting dtypes.</summary>
    public static void LoadWeights(LlamaForCausalLM model, string weightsPath)
    {
        var expected = WeightsOf(model).ToDictionary(p => p.Name, p => p.Tensor, StringComparer.Ordinal);
        var header = Safetensors.ReadHeader(weightsPath);
        var tied = model.Config.TieWordEmbeddings;

        var problems = new List<string>();
        var inFile = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        foreach (var (name, tensor) in expected)
        {
            if (!inFile.TryGetValue(name, out var entry)) problems.Add($"missing '{name}'");
            else if (!entry.Shape.SequenceEqual(tensor.shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", entry.Shape)}] in the file but the model needs [{string.Join(", ", tensor.shape)}]");
        }
        foreach (var name in inFile.Keys)
            if (!expected.ContainsKey(name) && !(tied && name == TiedHeadKey)) problems.Add($"unexpected '{name}'");
        if (problems.Count > 0)
            throw new FineTuneException(Diagnostic.Error("FT0522",
                $"the weights do not fit the model in config.json ({problems.Count} problem(s)): {string.Join("; ", problems.Take(20))}{(problems.Count > 20 ? "; ..." : "")}",
                weightsPath), ExitCodes.StageFailed);

        var loaded = Safetensors.Load(weightsPath, expected.ContainsKey);
        try
        {
            using var _ = no_grad();
            foreach (var (name, tensor) in expected) tensor.copy_(loaded[name]);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

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
