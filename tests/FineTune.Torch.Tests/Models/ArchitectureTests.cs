using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Models;

/// <summary>
/// Tiny random checkpoints in the Hugging Face layout, one per family, written here key by key (not by the model
/// under test), loaded by <see cref="ModelFolder"/> and checked against <see cref="ReferenceLlama"/>.
/// </summary>
public sealed class ArchitectureTests : IDisposable
{
    private readonly string _dir = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "finetune-arch-" + Guid.NewGuid().ToString("N")[..10])).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private const int Vocab = 29, Hidden = 16, Intermediate = 24, Layers = 2, Heads = 4, KvHeads = 2;

    private static JsonObject BaseConfig(string modelType, string architecture) => new()
    {
        ["architectures"] = new JsonArray(architecture),
        ["model_type"] = modelType,
        ["vocab_size"] = Vocab,
        ["hidden_size"] = Hidden,
        ["intermediate_size"] = Intermediate,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["num_key_value_heads"] = KvHeads,
        ["hidden_act"] = "silu",
        ["rms_norm_eps"] = 1e-6,
        ["rope_theta"] = 10000.0,
        ["max_position_embeddings"] = 128,
        ["torch_dtype"] = "bfloat16",
    };

    /// <summary>The keys and shapes transformers writes for such a model, with random values in <paramref name="dtype"/>.</summary>
    private static Dictionary<string, Tensor> RandomWeights(int headDim, bool bias, bool qkNorm, bool tied, ScalarType dtype, ulong seed)
    {
        var generator = new Generator(seed);
        var shapes = new List<(string Name, long[] Shape, string Kind)> { ("model.embed_tokens.weight", [Vocab, Hidden], "matrix"), ("model.norm.weight", [Hidden], "norm") };
        if (!tied) shapes.Add(("lm_head.weight", [Vocab, Hidden], "matrix"));
        for (var l = 0; l < Layers; l++)
        {
            var p = $"model.layers.{l}.";
            shapes.Add((p + "self_attn.q_proj.weight", [Heads * headDim, Hidden], "matrix"));
            shapes.Add((p + "self_attn.k_proj.weight", [KvHeads * headDim, Hidden], "matrix"));
            shapes.Add((p + "self_attn.v_proj.weight", [KvHeads * headDim, Hidden], "matrix"));
            shapes.Add((p + "self_attn.o_proj.weight", [Hidden, Heads * headDim], "matrix"));
            if (bias)
            {
                shapes.Add((p + "self_attn.q_proj.bias", [Heads * headDim], "bias"));
                shapes.Add((p + "self_attn.k_proj.bias", [KvHeads * headDim], "bias"));
                shapes.Add((p + "self_attn.v_proj.bias", [KvHeads * headDim], "bias"));
            }
            if (qkNorm)
            {
                shapes.Add((p + "self_attn.q_norm.weight", [headDim], "norm"));
                shapes.Add((p + "self_attn.k_norm.weight", [headDim], "norm"));
            }
            shapes.Add((p + "mlp.gate_proj.weight", [Intermediate, Hidden], "matrix"));
            shapes.Add((p + "mlp.up_proj.weight", [Intermediate, Hidden], "matrix"));
            shapes.Add((p + "mlp.down_proj.weight", [Hidden, Intermediate], "matrix"));
            shapes.Add((p + "input_layernorm.weight", [Hidden], "norm"));
            shapes.Add((p + "post_attention_layernorm.weight", [Hidden], "norm"));
        }
        return shapes.ToDictionary(s => s.Name, s => (s.Kind switch
        {
            "norm" => rand(s.Shape, generator: generator) + 0.5,
            "bias" => randn(s.Shape, generator: generator) * 0.3,
            _ => randn(s.Shape, generator: generator) * 0.4,
        }).to(dtype));
    }

    private void WriteFolder(JsonObject config, Dictionary<string, Tensor> weights, int shards = 1)
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
        if (shards == 1)
        {
            Safetensors.Save(Path.Combine(_dir, "model.safetensors"), weights);
            return;
        }
        var names = weights.Keys.Order(StringComparer.Ordinal).ToList();
        var weightMap = new JsonObject();
        for (var s = 0; s < shards; s++)
        {
            var file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = names.Where((_, i) => i % shards == s).ToDictionary(n => n, n => weights[n]);
            Safetensors.Save(Path.Combine(_dir, file), part);
            foreach (var name in part.Keys) weightMap[name] = file;
        }
        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 0 }, ["weight_map"] = weightMap };
        File.WriteAllText(Path.Combine(_dir, ModelFolder.ShardIndexFile), index.ToJsonString());
    }

    private static readonly int[][] Sequences = [[1, 5, 9, 28, 2, 17, 3, 11], [4, 4, 20, 0, 12, 8, 7, 6]];

    /// <summary>Loads the folder and asserts its logits equal the reference computed from the stored weights.</summary>
    private float[][] AssertLogitsMatchReference(Dictionary<string, Tensor> weights)
    {
        using var model = ModelFolder.Load(_dir);
        var reference = weights.ToDictionary(kv => kv.Key, kv => LlamaForCausalLMTests.Matrix(kv.Value));
        using var ids = tensor(Sequences.SelectMany(s => s).Select(i => (long)i).ToArray(), [Sequences.Length, Sequences[0].Length]);
        using var logits = model.Logits(model.Hidden(ids));
        var all = new float[Sequences.Length][];
        for (var b = 0; b < Sequences.Length; b++)
        {
            var expected = ReferenceLlama.Logits(model.Config, reference, Sequences[b]);
            var actual = logits[b].data<float>().ToArray();
            Assert.Equal(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-4 * (1 + Math.Abs(expected[i])), $"{model.Config.ModelType} batch {b} logit {i}: {expected[i]} vs {actual[i]}");
            all[b] = actual;
        }
        return all;
    }

    [Fact]
    public void Llama_3_2_with_llama3_rope_scaling_and_tied_embeddings()
    {
        var config = BaseConfig("llama", "LlamaForCausalLM");
        config["tie_word_embeddings"] = true;
        config["head_dim"] = 8; // Llama 3.2 configs name head_dim; here it is not hidden / heads (4)
        // A small original context, so the three bands occur among 4 frequencies: wavelength 6.3 kept (< 16),
        // 63 blended (16..64), 628 and 6283 stretched (> 64).
        config["rope_scaling"] = new JsonObject
        {
            ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 64,
        };
        var weights = RandomWeights(headDim: 8, bias: false, qkNorm: false, tied: true, ScalarType.BFloat16, seed: 1);
        WriteFolder(config, weights);
        var scaled = AssertLogitsMatchReference(weights);

        var loaded = ModelFolder.ReadConfig(_dir);
        Assert.Equal(new RopeScaling("llama3", 8, 1, 4, 64), loaded.RopeScaling);
        Assert.True(loaded.TieWordEmbeddings);

        // Without the scaling the logits differ: the test above would notice scaling being ignored.
        config.Remove("rope_scaling");
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
        var plain = AssertLogitsMatchReference(weights);
        Assert.True(scaled[0].Zip(plain[0]).Max(p => Math.Abs(p.First - p.Second)) > 1e-3);
    }

    [Fact]
    public void Llama3_inverse_frequencies_keep_blend_and_stretch_as_transformers_does()
    {
        var config = new LlamaConfig
        {
            HiddenSize = 64, NumAttentionHeads = 4, RopeTheta = 10000,
            RopeScaling = new RopeScaling("llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64),
        };
        var actual = config.RopeInverseFrequencies();
        var expected = ReferenceLlama.InverseFrequencies(config);
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 12);
        Assert.Equal(1.0, actual[0], 12);                              // wavelength 2π < 16: kept
        Assert.Equal(Math.Pow(10000, -14.0 / 16) / 8, actual[^1], 12); // wavelength > 64: divided by the factor
    }

    [Fact]
    public void Qwen2_has_qkv_biases_without_saying_so_and_loads_bf16()
    {
        var config = BaseConfig("qwen2", "Qwen2ForCausalLM");
        config["tie_word_embeddings"] = true;
        config["use_sliding_window"] = false;
        var weights = RandomWeights(headDim: Hidden / Heads, bias: true, qkNorm: false, tied: true, ScalarType.BFloat16, seed: 2);
        WriteFolder(config, weights);
        AssertLogitsMatchReference(weights);
        Assert.True(ModelFolder.ReadConfig(_dir).AttentionBias);

        using var bf16 = ModelFolder.Load(_dir, ScalarType.BFloat16);
        Assert.All(bf16.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        var key = "model.layers.1.self_attn.k_proj.bias";
        Assert.True(bf16.state_dict()[key].eq(weights[key]).all().item<bool>());
    }

    [Fact]
    public void Qwen3_with_qk_norms_and_its_own_head_dim_from_fp16_shards()
    {
        var config = BaseConfig("qwen3", "Qwen3ForCausalLM");
        config["head_dim"] = 6; // not hidden / heads (4)
        config["attention_bias"] = false;
        config["tie_word_embeddings"] = false;
        var weights = RandomWeights(headDim: 6, bias: false, qkNorm: true, tied: false, ScalarType.Float16, seed: 3);
        WriteFolder(config, weights, shards: 3);
        Assert.False(File.Exists(Path.Combine(_dir, "model.safetensors")));
        AssertLogitsMatchReference(weights);
        Assert.Equal(6, ModelFolder.ReadConfig(_dir).HeadDim);
    }

    [Fact]
    public void Mistral_in_fp32()
    {
        var config = BaseConfig("mistral", "MistralForCausalLM");
        config["sliding_window"] = null;
        var weights = RandomWeights(headDim: Hidden / Heads, bias: false, qkNorm: false, tied: false, ScalarType.Float32, seed: 4);
        WriteFolder(config, weights);
        AssertLogitsMatchReference(weights);
    }

    [Fact]
    public void Mistral_sliding_window_limits_attention_also_when_decoding_with_the_cache()
    {
        var config = BaseConfig("mistral", "MistralForCausalLM");
        config["sliding_window"] = 3; // sequences are 8 long
        var weights = RandomWeights(headDim: Hidden / Heads, bias: false, qkNorm: false, tied: false, ScalarType.Float32, seed: 8);
        WriteFolder(config, weights);
        var windowed = AssertLogitsMatchReference(weights);
        Assert.Equal(3, ModelFolder.ReadConfig(_dir).SlidingWindow);

        using var model = ModelFolder.Load(_dir);
        using var ids = tensor(Sequences[0].Select(i => (long)i).ToArray(), [1, Sequences[0].Length]);
        using var cache = model.NewCache();
        var steps = new List<Tensor> { model.Logits(model.Hidden(ids[.., ..2], cache: cache)) };
        for (var t = 2; t < Sequences[0].Length; t++) steps.Add(model.Logits(model.Hidden(ids[.., t..(t + 1)], cache: cache)));
        using var incremental = cat(steps, 1);
        var expected = tensor(windowed[0], [1, Sequences[0].Length, Vocab]);
        Assert.True(incremental.allclose(expected, rtol: 1e-4, atol: 1e-4), $"max diff {(incremental - expected).abs().max().item<float>()}");

        config.Remove("sliding_window");
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
        var full = AssertLogitsMatchReference(weights);
        Assert.True(windowed[0][^Vocab..].Zip(full[0][^Vocab..]).Max(p => Math.Abs(p.First - p.Second)) > 1e-3);
    }

    [Fact]
    public void Weights_of_another_family_are_named_as_missing_or_unexpected()
    {
        var config = BaseConfig("llama", "LlamaForCausalLM");
        WriteFolder(config, RandomWeights(headDim: 4, bias: true, qkNorm: false, tied: false, ScalarType.Float32, seed: 5));
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0522", error.Diagnostics[0].Code);
        Assert.Contains("unexpected 'model.layers.0.self_attn.q_proj.bias'", error.Message);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
    }

    [Fact]
    public void An_unsupported_architecture_is_named_with_the_supported_list()
    {
        var config = BaseConfig("gpt_neox", "GPTNeoXForCausalLM");
        WriteFolder(config, RandomWeights(headDim: 4, bias: false, qkNorm: false, tied: false, ScalarType.Float32, seed: 6));
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0523", error.Diagnostics[0].Code);
        Assert.Contains("'gpt_neox'", error.Message);
        Assert.Contains("llama (LlamaForCausalLM), mistral (MistralForCausalLM), qwen2 (Qwen2ForCausalLM), qwen3 (Qwen3ForCausalLM)", error.Message);
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);

        config["model_type"] = "llama";
        config["architectures"] = new JsonArray("LlamaForCausalLM");
        config["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 };
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJsonString());
        var yarn = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Contains("rope_scaling type 'yarn' is not supported", yarn.Message);
    }

    [Fact]
    public void A_config_missing_a_field_names_it()
    {
        var config = BaseConfig("qwen2", "Qwen2ForCausalLM");
        config.Remove("intermediate_size");
        WriteFolder(config, new Dictionary<string, Tensor> { ["x"] = zeros(1) });
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0520", error.Diagnostics[0].Code);
        Assert.Contains("missing 'intermediate_size'", error.Message);
        Assert.EndsWith("config.json", error.Diagnostics[0].File);
    }

    [Fact]
    public void A_pickle_checkpoint_is_refused_with_how_to_convert()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), BaseConfig("llama", "LlamaForCausalLM").ToJsonString());
        File.WriteAllBytes(Path.Combine(_dir, "pytorch_model.bin"), [0x80, 0x02]);
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0525", error.Diagnostics[0].Code);
        Assert.Contains("execute arbitrary code", error.Message);
        Assert.Contains("save_pretrained(folder, safe_serialization=True)", error.Message);
    }

    [Fact]
    public void A_shard_index_naming_a_missing_file_says_which()
    {
        var config = BaseConfig("mistral", "MistralForCausalLM");
        WriteFolder(config, RandomWeights(headDim: 4, bias: false, qkNorm: false, tied: false, ScalarType.Float32, seed: 7), shards: 2);
        File.Delete(Path.Combine(_dir, "model-00002-of-00002.safetensors"));
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0524", error.Diagnostics[0].Code);
        Assert.Contains("'model-00002-of-00002.safetensors'", error.Message);
    }

    [Fact]
    public void Config_round_trips_through_json_for_every_family()
    {
        var configs = new[]
        {
            new LlamaConfig { ModelType = "qwen3", VocabSize = 10, HiddenSize = 16, IntermediateSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 8 },
            new LlamaConfig { ModelType = "qwen2", VocabSize = 10, HiddenSize = 16, IntermediateSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 2, AttentionBias = true, TieWordEmbeddings = true },
            new LlamaConfig { VocabSize = 10, HiddenSize = 16, IntermediateSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 4, RopeScaling = new RopeScaling("llama3", 32, 1, 4, 8192) },
        };
        foreach (var config in configs)
        {
            var json = config.ToJson("bfloat16");
            Assert.Equal(config, LlamaConfig.FromJson(json, "config.json"));
            Assert.Contains(LlamaConfig.SupportedModelTypes[config.ModelType], json);
        }
    }
}
