using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Models;

public class LlamaForCausalLMTests
{
    private static LlamaConfig SmallConfig(bool tied = false) => new()
    {
        VocabSize = 37,
        HiddenSize = 16,
        IntermediateSize = 24,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        RopeTheta = 10000,
        RmsNormEps = 1e-5,
        TieWordEmbeddings = tied,
    };

    private static LlamaForCausalLM NewModel(LlamaConfig config, long seed = 7)
    {
        var model = new LlamaForCausalLM(config);
        model.InitializeWeights(seed);
        // Norm weights start at 1; make them differ so a swapped or missing norm would show.
        using (no_grad())
        {
            var generator = new Generator(99);
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("norm.weight")) p.copy_(rand(p.shape, generator: generator) + 0.5);
        }
        return model;
    }

    [Fact]
    public void State_dict_keys_are_hugging_face_keys()
    {
        using var model = NewModel(SmallConfig());
        var keys = model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var expected = new List<string> { "lm_head.weight", "model.embed_tokens.weight", "model.norm.weight" };
        for (var i = 0; i < 2; i++)
        {
            foreach (var p in new[] { "q", "k", "v", "o" }) expected.Add($"model.layers.{i}.self_attn.{p}_proj.weight");
            foreach (var p in new[] { "gate", "up", "down" }) expected.Add($"model.layers.{i}.mlp.{p}_proj.weight");
            expected.Add($"model.layers.{i}.input_layernorm.weight");
            expected.Add($"model.layers.{i}.post_attention_layernorm.weight");
        }
        Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), keys);
        Assert.Equal(new long[] { 8, 16 }, model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape);
        Assert.Equal(new long[] { 37, 16 }, model.state_dict()["lm_head.weight"].shape);
    }

    [Fact]
    public void Tied_model_has_no_lm_head_and_uses_the_embedding()
    {
        using var model = NewModel(SmallConfig(tied: true));
        Assert.DoesNotContain("lm_head.weight", model.state_dict().Keys);
        using var hidden = randn(3, 16);
        using var logits = model.Logits(hidden);
        using var expected = hidden.matmul(model.state_dict()["model.embed_tokens.weight"].t());
        Assert.True(logits.allclose(expected, rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void Initialization_is_deterministic_per_seed()
    {
        using var a = new LlamaForCausalLM(SmallConfig());
        using var b = new LlamaForCausalLM(SmallConfig());
        using var c = new LlamaForCausalLM(SmallConfig());
        a.InitializeWeights(3);
        b.InitializeWeights(3);
        c.InitializeWeights(4);
        foreach (var (key, tensor) in a.state_dict())
        {
            Assert.True(tensor.eq(b.state_dict()[key]).all().item<bool>(), key);
            if (!key.EndsWith("norm.weight")) Assert.False(tensor.eq(c.state_dict()[key]).all().item<bool>(), key);
        }
        var std = a.state_dict()["model.layers.0.mlp.gate_proj.weight"].std().item<float>();
        Assert.InRange(std, 0.015, 0.025);
    }

    [Fact]
    public void Logits_equal_a_plain_loop_reference()
    {
        var config = SmallConfig();
        using var model = NewModel(config);
        int[][] sequences = [[1, 5, 9, 33, 2, 17], [4, 4, 30, 0, 12, 8]];
        using var ids = tensor(sequences.SelectMany(s => s).Select(i => (long)i).ToArray(), [2, 6]);
        using var logits = model.Logits(model.Hidden(ids));
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => Matrix(kv.Value));
        for (var b = 0; b < sequences.Length; b++)
        {
            var expected = ReferenceLlama.Logits(config, weights, sequences[b]);
            var actual = logits[b].data<float>().ToArray();
            for (var i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"batch {b} logit {i}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void Right_padding_with_a_mask_leaves_real_positions_unchanged()
    {
        using var model = NewModel(SmallConfig());
        using var alone = tensor(new long[] { 3, 7, 11 }, [1, 3]);
        using var padded = tensor(new long[] { 3, 7, 11, 0, 0, 5, 6, 7, 8, 9 }, [2, 5]);
        using var mask = tensor(new long[] { 1, 1, 1, 0, 0, 1, 1, 1, 1, 1 }, [2, 5]);
        using var expected = model.Hidden(alone);
        using var withMask = model.Hidden(padded, mask);
        using var withoutMask = model.Hidden(padded);
        Assert.True(withMask[0, ..3].allclose(expected[0], rtol: 0, atol: 1e-5));
        Assert.True(withoutMask[0, ..3].allclose(expected[0], rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void Incremental_decoding_with_the_cache_equals_the_full_forward()
    {
        using var model = NewModel(SmallConfig());
        long[] sequence = [2, 9, 14, 3, 30, 21, 7];
        using var ids = tensor(sequence, [1, sequence.Length]);
        using var full = model.Logits(model.Hidden(ids));

        using var cache = model.NewCache();
        var steps = new List<Tensor>();
        using (var scope = NewDisposeScope())
        {
            // A 3-token prompt, then one token at a time; each step in its own dispose scope, as a generator would.
            steps.Add(model.Logits(model.Hidden(ids[.., ..3], cache: cache)).MoveToOuterDisposeScope());
        }
        Assert.Equal(3, cache.Length);
        for (var t = 3; t < sequence.Length; t++)
        {
            using var scope = NewDisposeScope();
            steps.Add(model.Logits(model.Hidden(ids[.., t..(t + 1)], cache: cache)).MoveToOuterDisposeScope());
        }
        Assert.Equal(sequence.Length, cache.Length);
        using var incremental = cat(steps, 1);
        Assert.True(incremental.allclose(full, rtol: 0, atol: 1e-5), $"max diff {(incremental - full).abs().max().item<float>()}");

        // A multi-token chunk after a cached prefix needs the offset causal mask.
        using var cache2 = model.NewCache();
        using var first = model.Logits(model.Hidden(ids[.., ..2], cache: cache2));
        using var rest = model.Logits(model.Hidden(ids[.., 2..], cache: cache2));
        Assert.True(cat([first, rest], 1).allclose(full, rtol: 0, atol: 1e-5));
    }

    internal static float[,] Matrix(Tensor t)
    {
        var flat = t.to(ScalarType.Float32).data<float>().ToArray();
        var rows = t.dim() == 1 ? 1 : (int)t.shape[0];
        var cols = (int)t.shape[^1];
        var m = new float[rows, cols];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < cols; c++) m[r, c] = flat[r * cols + c];
        return m;
    }
}

/// <summary>
/// Llama (and Mistral, Qwen2, Qwen3) written from the Hugging Face modeling code with nothing but loops over float
/// arrays (double accumulation), independent of the TorchSharp implementation under test. Biases are used when the
/// weights hold them, q/k norms when the weights hold self_attn.q_norm.weight.
/// </summary>
internal static class ReferenceLlama
{
    public static float[] Logits(LlamaConfig c, Dictionary<string, float[,]> w, int[] tokens)
    {
        int T = tokens.Length, H = c.HiddenSize, nh = c.NumAttentionHeads, nkv = c.NumKeyValueHeads, d = c.HeadDim;
        var inverseFrequencies = InverseFrequencies(c);
        var x = new double[T][];
        for (var t = 0; t < T; t++) x[t] = Row(w["model.embed_tokens.weight"], tokens[t]);
        for (var l = 0; l < c.NumHiddenLayers; l++)
        {
            string P(string s) => $"model.layers.{l}.{s}.weight";
            var h = x.Select(r => RmsNorm(r, w[P("input_layernorm")], c.RmsNormEps)).ToArray();
            double[] Project(string name, double[] r)
            {
                var y = MatVec(w[P(name)], r);
                if (w.TryGetValue($"model.layers.{l}.{name}.bias", out var bias))
                    for (var i = 0; i < y.Length; i++) y[i] += bias[0, i];
                return y;
            }
            var q = h.Select(r => Project("self_attn.q_proj", r)).ToArray();
            var k = h.Select(r => Project("self_attn.k_proj", r)).ToArray();
            var v = h.Select(r => Project("self_attn.v_proj", r)).ToArray();
            var qkNorm = w.ContainsKey(P("self_attn.q_norm"));
            for (var t = 0; t < T; t++)
            {
                for (var head = 0; head < nh; head++)
                {
                    if (qkNorm) NormSlice(q[t], head * d, d, w[P("self_attn.q_norm")], c.RmsNormEps);
                    Rope(q[t], head * d, d, t, inverseFrequencies);
                }
                for (var head = 0; head < nkv; head++)
                {
                    if (qkNorm) NormSlice(k[t], head * d, d, w[P("self_attn.k_norm")], c.RmsNormEps);
                    Rope(k[t], head * d, d, t, inverseFrequencies);
                }
            }
            var attn = new double[T][];
            for (var t = 0; t < T; t++)
            {
                attn[t] = new double[nh * d];
                for (var head = 0; head < nh; head++)
                {
                    var kvHead = head / (nh / nkv);
                    var scores = new double[t + 1];
                    for (var s = 0; s <= t; s++)
                    {
                        // Outside Mistral's sliding window: weight exp(-inf) = 0.
                        if (c.SlidingWindow is { } window && s <= t - window) { scores[s] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (var i = 0; i < d; i++) dot += q[t][head * d + i] * k[s][kvHead * d + i];
                        scores[s] = dot / Math.Sqrt(d);
                    }
                    var max = scores.Max();
                    var exp = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var sum = exp.Sum();
                    for (var s = 0; s <= t; s++)
                        for (var i = 0; i < d; i++) attn[t][head * d + i] += exp[s] / sum * v[s][kvHead * d + i];
                }
            }
            for (var t = 0; t < T; t++)
            {
                var o = MatVec(w[P("self_attn.o_proj")], attn[t]);
                for (var i = 0; i < H; i++) x[t][i] += o[i];
                var n = RmsNorm(x[t], w[P("post_attention_layernorm")], c.RmsNormEps);
                var gate = MatVec(w[P("mlp.gate_proj")], n);
                var up = MatVec(w[P("mlp.up_proj")], n);
                var act = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
                var down = MatVec(w[P("mlp.down_proj")], act);
                for (var i = 0; i < H; i++) x[t][i] += down[i];
            }
        }
        var head_ = w.TryGetValue("lm_head.weight", out var lm) ? lm : w["model.embed_tokens.weight"];
        return x.SelectMany(r => MatVec(head_, RmsNorm(r, w["model.norm.weight"], c.RmsNormEps)).Select(v => (float)v)).ToArray();
    }

    private static double[] Row(float[,] m, int r) => Enumerable.Range(0, m.GetLength(1)).Select(c => (double)m[r, c]).ToArray();

    private static double[] MatVec(float[,] m, double[] x)
    {
        var y = new double[m.GetLength(0)];
        for (var r = 0; r < y.Length; r++)
            for (var c = 0; c < x.Length; c++) y[r] += m[r, c] * x[c];
        return y;
    }

    private static double[] RmsNorm(double[] x, float[,] weight, double eps)
    {
        var ms = x.Select(v => v * v).Average();
        return x.Select((v, i) => v / Math.Sqrt(ms + eps) * weight[0, i]).ToArray();
    }

    private static void NormSlice(double[] v, int offset, int d, float[,] weight, double eps)
    {
        var normed = RmsNorm(v[offset..(offset + d)], weight, eps);
        Array.Copy(normed, 0, v, offset, d);
    }

    // transformers' _compute_default_rope_parameters, then _compute_llama3_parameters or the linear one, as torch.where masks.
    public static double[] InverseFrequencies(LlamaConfig c)
    {
        var d = c.HeadDim;
        var inv = new double[d / 2];
        for (var i = 0; i < d / 2; i++) inv[i] = 1.0 / Math.Pow(c.RopeTheta, (2.0 * i) / d);
        if (c.RopeScaling is { RopeType: "linear", Factor: var linearFactor }) return inv.Select(f => f / linearFactor).ToArray();
        if (c.RopeScaling is not { RopeType: "llama3" } s) return inv;
        var lowFreqWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        var highFreqWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        var result = new double[inv.Length];
        for (var i = 0; i < inv.Length; i++)
        {
            var wavelen = 2 * Math.PI / inv[i];
            var llama = wavelen > lowFreqWavelen ? inv[i] / s.Factor : inv[i];
            var smoothFactor = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
            var smoothed = (1 - smoothFactor) * llama / s.Factor + smoothFactor * llama;
            var isMediumFreq = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
            result[i] = isMediumFreq ? smoothed : llama;
        }
        return result;
    }

    // HF rotate_half: dimension i (< d/2) pairs with i + d/2, both rotated by position * inv_freq[i].
    private static void Rope(double[] v, int offset, int d, int position, double[] inverseFrequencies)
    {
        for (var i = 0; i < d / 2; i++)
        {
            var angle = position * inverseFrequencies[i];
            double a = v[offset + i], b = v[offset + i + d / 2];
            v[offset + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
            v[offset + i + d / 2] = b * Math.Cos(angle) + a * Math.Sin(angle);
        }
    }
}
