using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Torch.Models;

/// <summary>
/// The hyper-parameters of a Llama-architecture decoder, named and serialised as Hugging Face's
/// <c>config.json</c> (<c>LlamaForCausalLM</c>), so an exported model loads in transformers and llama.cpp converters.
/// </summary>
public sealed record LlamaConfig
{
    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    public double RopeTheta { get; init; } = 10000;
    public double RmsNormEps { get; init; } = 1e-5;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    public int? PadTokenId { get; init; }

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public string ToJson(string torchDtype)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["rope_theta"] = RopeTheta,
            ["rms_norm_eps"] = RmsNormEps,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["pad_token_id"] = PadTokenId,
            ["torch_dtype"] = torchDtype,
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public static LlamaConfig FromJson(string json, string sourceForErrors)
    {
        var node = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{sourceForErrors}: not a JSON object");
        int Int(string key) => node[key]?.GetValue<int>() ?? throw new InvalidDataException($"{sourceForErrors}: missing '{key}'");
        int? OptionalInt(string key) => node[key] is JsonValue v && v.TryGetValue<int>(out var i) ? i : null;
        var heads = Int("num_attention_heads");
        return new LlamaConfig
        {
            VocabSize = Int("vocab_size"),
            HiddenSize = Int("hidden_size"),
            IntermediateSize = Int("intermediate_size"),
            NumHiddenLayers = Int("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = OptionalInt("num_key_value_heads") ?? heads,
            RopeTheta = node["rope_theta"]?.GetValue<double>() ?? 10000,
            RmsNormEps = node["rms_norm_eps"]?.GetValue<double>() ?? 1e-6,
            MaxPositionEmbeddings = OptionalInt("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = node["tie_word_embeddings"]?.GetValue<bool>() ?? false,
            BosTokenId = OptionalInt("bos_token_id"),
            EosTokenId = OptionalInt("eos_token_id"),
            PadTokenId = OptionalInt("pad_token_id"),
        };
    }
}
