using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using FineTune.Torch.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Torch.Lora;

/// <summary>
/// What <see cref="LoraAdapter.Apply"/> did: the adapters, the parameters to optimise and the counts for the plan.
/// </summary>
internal sealed record AppliedLora(
    LoraOptions Options,
    IReadOnlyList<string> TargetModules,
    IReadOnlyDictionary<string, LoraLinear> Layers,
    IReadOnlyList<Parameter> TrainableParameters,
    long TrainableCount,
    long TotalCount)
{
    /// <summary>
    /// Trainable share of all parameters (PEFT's print_trainable_parameters), e.g. 0.0026 for Llama-3-8B r=8.
    /// </summary>
    public double TrainableShare => TotalCount == 0 ? 0 : (double)TrainableCount / TotalCount;
}

/// <summary>
/// LoRA on a <see cref="LlamaForCausalLM"/> with PEFT's semantics and file format. The targeted projections are
/// replaced in place by <see cref="LoraLinear"/> wrappers, so model.parameters() and named_parameters() include the
/// adapters (named model.layers.{i}.self_attn.q_proj.lora_A.weight ...) and the base keys keep their Hugging Face
/// names.
/// </summary>
internal static class LoraAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>PEFT saves adapter keys under its wrapper: base_model.model. + the transformers key.</summary>
    public const string PeftPrefix = "base_model.model.";

    /// <summary>
    /// Wraps the targeted projections of every decoder layer, freezes every base parameter and returns the adapter
    /// parameters (the only ones with requires_grad). A is drawn from <see cref="LoraOptions.Seed"/>, B is zero, so the
    /// model computes exactly what it computed before.
    /// </summary>
    public static AppliedLora Apply(LlamaForCausalLM model, LoraOptions options)
    {
        if (Layers(model).Count > 0) throw new InvalidOperationException("LoRA is already applied to this model");
        var targets = ResolveTargets(options);
        if (options.R <= 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidLoraOptions,
                $"LoRA r must be a positive integer, not {options.R}", null), ExitCodes.InvalidInput);
        if (options.Dropout is < 0 or >= 1)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidLoraOptions,
                $"LoRA dropout must be in [0, 1), not {options.Dropout}", null), ExitCodes.InvalidInput);

        var saved = ResolveModulesToSave(model, options);
        foreach (var parameter in model.parameters()) parameter.requires_grad = false;

        using var generator = new torch.Generator((ulong)options.Seed);
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        var layers = new Dictionary<string, LoraLinear>(StringComparer.Ordinal);
        foreach (var (name, module) in modules)
        {
            if (!name.StartsWith("model.layers.", StringComparison.Ordinal) || module is not Linear linear) continue;
            if (!targets.Contains(LastPart(name))) continue;
            var wrapper = new LoraLinear(linear, options.R, options.Alpha, options.Dropout, options.UseRslora,
                generator);
            ReplaceSubmodule(modules[ParentName(name)], LastPart(name), linear, wrapper);
            layers[name] = wrapper;
        }
        // freshly built wrappers are in training mode (dropout on) whatever the model is in
        model.train(model.training);

        var trainable = layers.Values.SelectMany(l => new[] { l.A, l.B }).ToList();
        // modules_to_save train in place: this process owns its copy of the base, so PEFT's separate copy is the
        // model's own weight; the adapter file gets it, and the merged model carries it.
        foreach (var parameter in saved.Values)
        {
            parameter.requires_grad = true;
            trainable.Add(parameter);
        }
        return new AppliedLora(options, targets, layers, trainable,
            trainable.Sum(p => p.numel()), model.parameters().Sum(p => p.numel()));
    }

    /// <summary>The LoRA wrappers currently in the model, by module name (empty when none is applied).</summary>
    public static IReadOnlyDictionary<string, LoraLinear> Layers(LlamaForCausalLM model) =>
        model.named_modules().Where(m => m.module is LoraLinear)
            .ToDictionary(m => m.name, m => (LoraLinear)m.module, StringComparer.Ordinal);

    /// <summary>Adds scale·B·A into every base weight; the wrappers stay but no longer add the update.</summary>
    public static void Merge(LlamaForCausalLM model)
    {
        foreach (var layer in Layers(model).Values) layer.Merge();
    }

    /// <summary>
    /// Merges and puts plain Linear layers back, leaving a model whose state_dict is a transformers checkpoint again
    /// (for a merged export through <see cref="ModelFolder.Save"/>). Base parameters stay frozen.
    /// <paramref name="mergedDtype"/>: the dtype of the merged layers (default: the base's). Float32 from a bfloat16
    /// base keeps the float32 sum whole instead of rounding it to bfloat16.
    /// </summary>
    public static void MergeAndUnload(LlamaForCausalLM model, ScalarType? mergedDtype = null)
    {
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module, StringComparer.Ordinal);
        foreach (var (name, module) in modules)
        {
            if (module is not LoraLinear layer) continue;
            ReplaceSubmodule(modules[ParentName(name)], LastPart(name), layer,
                layer.ToMergedLinear(mergedDtype ?? layer.BaseWeight.dtype));
        }
    }

    /// <summary>
    /// Writes PEFT's adapter folder: adapter_config.json and adapter_model.safetensors (float32 lora_A / lora_B under
    /// base_model.model.model.layers.{i}...). <paramref name="baseModelNameOrPath"/> is the Hub id or folder of the
    /// base.
    /// </summary>
    public static void SaveAdapter(LlamaForCausalLM model, LoraOptions options, string folder,
        string? baseModelNameOrPath)
    {
        var layers = Layers(model);
        if (layers.Count == 0) throw new InvalidOperationException("the model has no LoRA adapters to save");
        if (layers.Values.Any(l => l.Merged))
            throw new InvalidOperationException("the adapters are merged into the base weights; save them before " +
                "merging");
        Directory.CreateDirectory(folder);

        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, layer) in layers)
        {
            tensors[PeftPrefix + name + ".lora_A.weight"] = layer.A.detach().to(ScalarType.Float32).cpu();
            tensors[PeftPrefix + name + ".lora_B.weight"] = layer.B.detach().to(ScalarType.Float32).cpu();
        }
        foreach (var (module, key) in ModuleKeys(options))
            tensors[PeftPrefix + key] = model.state_dict()[key].detach().to(ScalarType.Float32).cpu();
        Safetensors.Save(Path.Combine(folder, WeightsFile), tensors);

        var targets = options.ResolvedTargets();
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["r"] = options.R,
            ["lora_alpha"] = options.Alpha,
            ["lora_dropout"] = options.Dropout,
            ["target_modules"] = new JsonArray(targets.Select(t => (JsonNode)t).ToArray()),
            ["bias"] = "none",
            ["use_rslora"] = options.UseRslora,
            ["fan_in_fan_out"] = false,
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
            ["modules_to_save"] = options.ModulesToSave.Count == 0 ? null
                : new JsonArray(options.ModulesToSave.Distinct().Select(m => (JsonNode)m).ToArray()),
            ["use_dora"] = false,
        };
        File.WriteAllText(Path.Combine(folder, ConfigFile),
            config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>
    /// Reads adapter_config.json into options (r, lora_alpha, lora_dropout, target_modules, use_rslora).
    /// </summary>
    public static LoraOptions ReadAdapterConfig(string folder)
    {
        var path = Path.Combine(folder, ConfigFile);
        if (!File.Exists(path))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidAdapterConfig,
                $"the adapter folder has no {ConfigFile}", folder), ExitCodes.InvalidInput);
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            var peftType = json["peft_type"]?.GetValue<string>();
            if (peftType != "LORA")
                throw new InvalidDataException($"peft_type is '{peftType}', only LORA adapters are supported");
            var bias = json["bias"]?.GetValue<string>() ?? "none";
            if (bias != "none") throw new InvalidDataException($"bias '{bias}' is not supported (only \"none\")");
            var targetNode = json["target_modules"] ?? throw new InvalidDataException("target_modules is missing");
            IReadOnlyList<string> targets = targetNode is JsonArray array
                ? array.Select(t => t!.GetValue<string>()).ToList()
                : [targetNode.GetValue<string>()];
            return new LoraOptions
            {
                R = json["r"]?.GetValue<int>() ?? throw new InvalidDataException("r is missing"),
                Alpha = json["lora_alpha"]?.GetValue<double>()
                    ?? throw new InvalidDataException("lora_alpha is missing"),
                Dropout = json["lora_dropout"]?.GetValue<double>() ?? 0,
                TargetModules = targets,
                UseRslora = json["use_rslora"]?.GetValue<bool>() ?? false,
                ModulesToSave = json["modules_to_save"] is JsonArray saved
                    ? saved.Select(m => m!.GetValue<string>()).ToList() : [],
            };
        }
        catch (Exception e)
            when (e is JsonException or InvalidOperationException or InvalidDataException or FormatException)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidAdapterConfig,
                $"{ConfigFile} is not a usable LoRA adapter config: {e.Message}", path), ExitCodes.InvalidInput);
        }
    }

    /// <summary>
    /// Applies the adapter of a PEFT folder to a base model (which must not have LoRA yet) and loads its weights.
    /// Every adapter tensor of the model must be in the file with its shape, and the file may hold nothing else.
    /// </summary>
    public static AppliedLora LoadAdapter(LlamaForCausalLM model, string folder)
    {
        var options = ReadAdapterConfig(folder);
        var applied = Apply(model, options);
        var path = Path.Combine(folder, WeightsFile);
        if (!File.Exists(path))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.AdapterWeightsMismatch,
                $"the adapter folder has no {WeightsFile}", folder), ExitCodes.InvalidInput);

        var expected = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, layer) in applied.Layers)
        {
            expected[PeftPrefix + name + ".lora_A.weight"] = layer.A;
            expected[PeftPrefix + name + ".lora_B.weight"] = layer.B;
        }
        var modelWeights = model.state_dict();
        foreach (var (_, key) in ModuleKeys(options)) expected[PeftPrefix + key] = modelWeights[key];
        var problems = new List<string>();
        var header = Safetensors.ReadHeader(path);
        foreach (var (name, tensor) in expected)
        {
            var entry = header[name];
            if (entry is null) problems.Add($"missing '{name}'");
            else if (!entry.Shape.SequenceEqual(tensor.shape))
                problems.Add($"'{name}' has shape [{string.Join(", ", entry.Shape)}] but the model needs " +
                    $"[{string.Join(", ", tensor.shape)}]");
        }
        // PEFT may name the adapter ("...lora_A.default.weight" in memory); on disk the name is stripped. Anything else
        // is foreign.
        foreach (var entry in header.Tensors)
            if (!expected.ContainsKey(entry.Name)) problems.Add($"unexpected '{entry.Name}'");
        if (problems.Count > 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.AdapterWeightsMismatch,
                $"the adapter weights do not fit this model ({problems.Count} problem(s)): " +
                $"{string.Join("; ", problems.Take(20))}{(problems.Count > 20 ? "; ..." : "")}",
                path), ExitCodes.InvalidInput);

        var loaded = Safetensors.Load(path);
        try
        {
            using var _ = no_grad();
            foreach (var (name, source) in loaded) expected[name].copy_(source);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
        return applied;
    }

    /// <summary>All parameters of a model of this config (what state_dict holds; the tied head counted once).</summary>
    public static long BaseParameterCount(LlamaConfig config)
    {
        long hidden = config.HiddenSize, vocab = config.VocabSize;
        long perLayer = 2 * hidden; // the two RMSNorms
        foreach (var projection in LoraOptions.DecoderProjections)
        {
            var (inFeatures, outFeatures) = LoraOptions.ProjectionShape(config, projection);
            perLayer += inFeatures * outFeatures;
            if (config.AttentionBias && projection is "q_proj" or "k_proj" or "v_proj") perLayer += outFeatures;
        }
        if (config.QkNorm) perLayer += 2L * config.HeadDim;
        return vocab * hidden * (config.TieWordEmbeddings ? 1 : 2) + perLayer * config.NumHiddenLayers + hidden;
    }

    /// <summary>The checkpoint key of each module in modules_to_save (lm_head -> lm_head.weight).</summary>
    private static IEnumerable<(string Module, string Key)> ModuleKeys(LoraOptions options) =>
        options.ModulesToSave.Distinct().Select(m => (m, LoraOptions.SavableModules[m]));

    private static Dictionary<string, Parameter> ResolveModulesToSave(LlamaForCausalLM model, LoraOptions options)
    {
        var unknown = options.ModulesToSave.Where(m => !LoraOptions.SavableModules.ContainsKey(m)).ToList();
        if (unknown.Count > 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModulesToSaveRefused,
                $"LoRA modules_to_save: unknown module(s) {string.Join(", ", unknown)}; use " +
                $"{string.Join(" or ", LoraOptions.SavableModules.Keys)}", null), ExitCodes.InvalidInput);
        if (options.ModulesToSave.Count > 0 && model.Config.TieWordEmbeddings)
            // PEFT would train a copy of one of the two and silently untie them; the merged model would then need a
            // head the architecture says it has not.
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ModulesToSaveRefused,
                $"LoRA modules_to_save ({string.Join(", ", options.ModulesToSave)}) on a model with tied embeddings " +
                $"(tie_word_embeddings: true): "
                + "the output head is the embedding matrix, so training either trains both and unties nothing PEFT " +
                "could save. "
                + "Remove modules_to_save, or use method: full to train every weight.", null), ExitCodes.InvalidInput);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        return options.ModulesToSave.Distinct().ToDictionary(m => m, m => parameters[LoraOptions.SavableModules[m]],
            StringComparer.Ordinal);
    }

    private static IReadOnlyList<string> ResolveTargets(LoraOptions options)
    {
        try { return options.ResolvedTargets(); }
        catch (ArgumentException e)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.InvalidLoraOptions, e.Message, null),
                ExitCodes.InvalidInput);
        }
    }

    private static string LastPart(string name) => name[(name.LastIndexOf('.') + 1)..];
    private static string ParentName(string name) => name[..Math.Max(0, name.LastIndexOf('.'))];

    // TorchSharp has no set_submodule, and register_module refuses a name already taken, so the swap goes through
    // the parent's private field and its registry: the registry is rebuilt in its old order with the new module, and
    // the field that forward() calls now holds it. Pinned TorchSharp (0.107); the LoRA tests fail if this changes.
    private static void ReplaceSubmodule(nn.Module parent, string name, nn.Module oldModule, nn.Module newModule)
    {
        var field = FieldsOf(parent.GetType()).FirstOrDefault(f => ReferenceEquals(f.GetValue(parent), oldModule))
            ?? throw new InvalidOperationException($"{parent.GetType().Name} has no field holding '{name}'");
        if (!field.FieldType.IsInstanceOfType(newModule))
            throw new InvalidOperationException($"{parent.GetType().Name}.{field.Name} is a {field.FieldType.Name} " +
                $"and cannot hold a {newModule.GetType().Name}");
        field.SetValue(parent, newModule);

        var registryField = FieldsOf(typeof(nn.Module)).FirstOrDefault(f => f.Name == "_internal_submodules")
            ?? throw new InvalidOperationException("TorchSharp's module registry (_internal_submodules) was not found");
        var registry = (TorchSharp.Utils.OrderedDict<string, nn.Module>)registryField.GetValue(parent)!;
        var entries = new List<(string Key, nn.Module Module)>();
        using (var items = registry.items())
            while (items.MoveNext())
                entries.Add((items.Current.Item1, items.Current.Item1 == name ? newModule : items.Current.Item2));
        registry.clear();
        foreach (var (key, module) in entries) parent.register_module(key, module);
    }

    private static IEnumerable<FieldInfo> FieldsOf(Type? type)
    {
        for (; type is not null; type = type.BaseType)
            foreach (var field in type.GetFields(
                BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public | BindingFlags.DeclaredOnly))
                yield return field;
    }
}
