using FineTune.Torch.Models;

namespace FineTune.Torch.Lora;

/// <summary>
/// LoRA settings with PEFT's meaning (LoraConfig: r, lora_alpha, lora_dropout, target_modules, use_rslora).
/// </summary>
internal sealed record LoraOptions
{
    public int R { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; }

    /// <summary>
    /// Projection names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or the single entry
    /// "all-linear".
    /// </summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "v_proj"];

    public bool UseRslora { get; init; }

    /// <summary>
    /// PEFT's modules_to_save: whole modules trained alongside the adapters (lm_head, embed_tokens) and saved in the
    /// adapter file. Refused on a model with tied embeddings, where the head and the embedding are one matrix.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];

    /// <summary>
    /// The modules <see cref="ModulesToSave"/> may name, with the key of their weight in the checkpoint.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> SavableModules =
        new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["embed_tokens"] = "model.embed_tokens.weight",
        ["lm_head"] = "lm_head.weight",
    };

    /// <summary>Seeds the initialisation of the A matrices (drawn in module order from a private generator).</summary>
    public long Seed { get; init; }

    public const string AllLinear = "all-linear";

    /// <summary>
    /// The projections of a decoder layer, in module order; "all-linear" means all of them (never lm_head).
    /// </summary>
    public static readonly IReadOnlyList<string> DecoderProjections =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public double Scale => UseRslora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>The target projections in module order, "all-linear" expanded; unknown names are an error.</summary>
    public IReadOnlyList<string> ResolvedTargets()
    {
        if (TargetModules.Count == 0) throw new ArgumentException("LoRA target_modules is empty");
        if (TargetModules.Any(t => t == AllLinear))
        {
            if (TargetModules.Count > 1)
                throw new ArgumentException($"LoRA target_modules: '{AllLinear}' cannot be combined with names");
            return DecoderProjections;
        }
        var unknown = TargetModules.Where(t => !DecoderProjections.Contains(t)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"LoRA target_modules: unknown module(s) {string.Join(", ", unknown)}; use " +
                $"{string.Join(", ", DecoderProjections)} or '{AllLinear}'");
        return DecoderProjections.Where(TargetModules.Contains).ToList();
    }

    /// <summary>
    /// Trainable LoRA parameters for a model of this config, without building it: r·(in + out) per adapted projection.
    /// </summary>
    public long TrainableParameterCount(LlamaConfig config)
    {
        long perLayer = 0;
        foreach (var target in ResolvedTargets())
        {
            var (inFeatures, outFeatures) = ProjectionShape(config, target);
            perLayer += (long)R * (inFeatures + outFeatures);
        }
        return perLayer * config.NumHiddenLayers
            + ModulesToSave.Distinct().Count() * (long)config.VocabSize * config.HiddenSize;
    }

    /// <summary>(in, out) features of a decoder projection, as LlamaForCausalLM builds it.</summary>
    public static (long In, long Out) ProjectionShape(LlamaConfig config, string projection)
    {
        long hidden = config.HiddenSize, q = (long)config.NumAttentionHeads * config.HeadDim,
            kv = (long)config.NumKeyValueHeads * config.HeadDim;
        return projection switch
        {
            "q_proj" => (hidden, q),
            "k_proj" or "v_proj" => (hidden, kv),
            "o_proj" => (q, hidden),
            "gate_proj" or "up_proj" => (hidden, config.IntermediateSize),
            "down_proj" => (config.IntermediateSize, hidden),
            _ => throw new ArgumentException($"'{projection}' is not a decoder projection"),
        };
    }
}
