using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;

namespace FineTune.Torch.Models;

/// <summary>
/// <c>rope_scaling</c> of config.json. <c>llama3</c> (Llama 3.1/3.2) stretches the low frequencies by
/// <see cref="Factor"/> and blends the middle band; <c>linear</c> divides every frequency by <see cref="Factor"/>.
/// </summary>
internal sealed record RopeScaling(string RopeType, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// The hyper-parameters of a Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, Qwen3), named and serialised as
/// Hugging Face's <c>config.json</c>, so an exported model loads in transformers and llama.cpp converters. The
/// families differ only in the switches below: q/k/v biases (Qwen2), RMSNorm of q and k per head (Qwen3), an
/// explicit head_dim, rope scaling and tied embeddings.
/// </summary>
internal sealed record LlamaConfig
{
    /// <summary>
    /// The <c>model_type</c> values this decoder implements, with the architecture class each one names.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> SupportedModelTypes = new Dictionary<string, string>
    {
        ["llama"] = "LlamaForCausalLM",
        ["mistral"] = "MistralForCausalLM",
        ["qwen2"] = "Qwen2ForCausalLM",
        ["qwen3"] = "Qwen3ForCausalLM",
    };

    public const string UnsupportedCode = DiagnosticCodes.UnsupportedArchitecture;

    private readonly int? _headDim;

    public string ModelType { get; init; } = "llama";
    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    public double RopeTheta { get; init; } = 10000;
    public RopeScaling? RopeScaling { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }

    /// <summary>
    /// Mistral's sliding window: each position attends to itself and the window - 1 positions before it.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>Biases on q_proj, k_proj and v_proj (o_proj never has one); always on for qwen2.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>q_norm and k_norm: RMSNorm over head_dim of each head's query and key before RoPE (qwen3).</summary>
    public bool QkNorm => ModelType == "qwen3";

    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    public int? PadTokenId { get; init; }

    /// <summary>
    /// hidden_size / num_attention_heads unless config.json says otherwise (Qwen3, Llama 3.2 and Mistral Nemo do).
    /// </summary>
    public int HeadDim
    {
        get => _headDim ?? HiddenSize / NumAttentionHeads;
        init => _headDim = value;
    }

    public string ToJson(string torchDtype)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(SupportedModelTypes[ModelType]),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["rope_theta"] = RopeTheta,
            ["rope_scaling"] = RopeScaling is { } s
                ? new JsonObject
                {
                    ["rope_type"] = s.RopeType,
                    ["factor"] = s.Factor,
                    ["low_freq_factor"] = s.LowFreqFactor,
                    ["high_freq_factor"] = s.HighFreqFactor,
                    ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
                }
                : null,
            ["rms_norm_eps"] = RmsNormEps,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["sliding_window"] = SlidingWindow,
            ["attention_bias"] = AttentionBias,
            ["mlp_bias"] = false,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["pad_token_id"] = PadTokenId,
            ["torch_dtype"] = torchDtype,
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>
    /// Reads a transformers config.json. A missing required field or a malformed value is an
    /// <see cref="InvalidDataException"/> naming it; an architecture this decoder does not implement is a
    /// <see cref="FineTuneException"/> (<see cref="UnsupportedCode"/>) listing the supported ones.
    /// </summary>
    public static LlamaConfig FromJson(string json, string sourceForErrors)
    {
        var node = JsonNode.Parse(json) as JsonObject
            ?? throw new InvalidDataException($"{sourceForErrors}: not a JSON object");
        var modelType = ModelTypeOf(node, sourceForErrors);

        int Int(string key) => node[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i
            : throw new InvalidDataException(node[key] is null ? $"missing '{key}'" : $"'{key}' is not an integer");
        int? OptionalInt(string key) => node[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
        double? OptionalDouble(string key) => node[key] is JsonValue v && v.TryGetValue<double>(out var d) ? d : null;
        bool? OptionalBool(string key) => node[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;

        if (node["hidden_act"] is JsonValue act && act.TryGetValue<string>(out var activation) && activation != "silu")
            throw Unsupported(sourceForErrors, $"hidden_act '{activation}' is not supported (only silu)");
        if (OptionalBool("mlp_bias") == true) throw Unsupported(sourceForErrors, "mlp_bias true is not supported");

        // Qwen2 configs carry a sliding_window that only applies with use_sliding_window (false in every Qwen2.5
        // release).
        if (modelType == "qwen2" && OptionalBool("use_sliding_window") == true)
            throw Unsupported(sourceForErrors, "use_sliding_window true is not supported for qwen2");

        var heads = Int("num_attention_heads");
        var config = new LlamaConfig
        {
            ModelType = modelType,
            VocabSize = Int("vocab_size"),
            HiddenSize = Int("hidden_size"),
            IntermediateSize = Int("intermediate_size"),
            NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = OptionalInt("num_key_value_heads") ?? heads,
            RopeTheta = OptionalDouble("rope_theta") ?? 10000,
            RopeScaling = ReadRopeScaling(node["rope_scaling"], sourceForErrors),
            RmsNormEps = OptionalDouble("rms_norm_eps") ?? 1e-6,
            MaxPositionEmbeddings = OptionalInt("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = OptionalBool("tie_word_embeddings") ?? false,
            SlidingWindow = modelType == "mistral" ? OptionalInt("sliding_window") : null,
            // Qwen2's config has no attention_bias key: its q/k/v projections always carry biases.
            AttentionBias = modelType == "qwen2" || (OptionalBool("attention_bias") ?? false),
            BosTokenId = OptionalInt("bos_token_id"),
            EosTokenId = OptionalInt("eos_token_id")
                ?? (node["eos_token_id"] is JsonArray eos && eos.Count > 0 && eos[0] is JsonValue first
                && first.TryGetValue<int>(out var e) ? e : null),
            PadTokenId = OptionalInt("pad_token_id"),
        };
        // Set only when it differs, so a config read back equals the one written.
        return OptionalInt("head_dim") is { } headDim && headDim != config.HeadDim ? config with { HeadDim = headDim }
            : config;
    }

    private static string ModelTypeOf(JsonObject node, string source)
    {
        var supported = string.Join(", ", SupportedModelTypes.Select(p => $"{p.Key} ({p.Value})"));
        // Configs written before model_type existed (and this tool's builtin ones) are Llama.
        var modelType = node["model_type"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : "llama";
        if (!SupportedModelTypes.ContainsKey(modelType))
            throw Unsupported(source, $"model_type '{modelType}' is not supported; supported: {supported}");
        if (node["architectures"] is JsonArray architectures)
            foreach (var architecture in architectures.Select(a => a?.GetValue<string>()))
                if (architecture is not null && !SupportedModelTypes.Values.Contains(architecture))
                    throw Unsupported(source,
                        $"architecture '{architecture}' is not supported; supported: {supported}");
        return modelType;
    }

    private static RopeScaling? ReadRopeScaling(JsonNode? node, string source)
    {
        if (node is not JsonObject scaling) return null;
        // transformers reads rope_type, or the older key type.
        var type = (scaling["rope_type"] ?? scaling["type"])?.GetValue<string>() ?? "default";
        double Number(string key, double? fallback = null) => scaling[key] is JsonValue v
            && v.TryGetValue<double>(out var d) ? d
            : fallback ?? throw new InvalidDataException($"rope_scaling of type '{type}' is missing '{key}'");
        return type switch
        {
            "default" => null,
            "linear" => new RopeScaling("linear", Number("factor")),
            "llama3" => new RopeScaling("llama3", Number("factor"), Number("low_freq_factor"),
                Number("high_freq_factor"),
                (int)Number("original_max_position_embeddings")),
            _ => throw Unsupported(source, $"rope_scaling type '{type}' is not supported; supported: llama3, linear"),
        };
    }

    private static FineTuneException Unsupported(string source, string message) =>
        new(Diagnostic.Error(UnsupportedCode, message, source), ExitCodes.InvalidInput);

    /// <summary>
    /// RoPE's inverse frequencies (head_dim / 2 of them), as transformers computes them: theta^(-2i/d), then
    /// <c>_compute_llama3_parameters</c> or linear scaling when rope_scaling asks for it.
    /// </summary>
    public double[] RopeInverseFrequencies()
    {
        var d = HeadDim;
        var frequencies = Enumerable.Range(0, d / 2).Select(i => 1.0 / Math.Pow(RopeTheta, 2.0 * i / d)).ToArray();
        switch (RopeScaling)
        {
            case { RopeType: "linear" } linear:
                return frequencies.Select(f => f / linear.Factor).ToArray();
            case { RopeType: "llama3" } s:
                double oldContext = s.OriginalMaxPositionEmbeddings;
                var lowFreqWavelength = oldContext / s.LowFreqFactor;
                var highFreqWavelength = oldContext / s.HighFreqFactor;
                return frequencies.Select(f =>
                {
                    var wavelength = 2 * Math.PI / f;
                    if (wavelength < highFreqWavelength) return f;               // high frequencies: unchanged
                    if (wavelength > lowFreqWavelength) return f / s.Factor;     // low frequencies: stretched
                    var smooth = (oldContext / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    return (1 - smooth) * f / s.Factor + smooth * f;             // in between: blended
                }).ToArray();
            default:
                return frequencies;
        }
    }
}
