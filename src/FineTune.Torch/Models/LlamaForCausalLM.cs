using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Models;

// A Llama-family decoder (Llama, Mistral, Qwen2, Qwen3: see LlamaConfig for the switches), read top to bottom: RMSNorm
// -> rotary embedding -> attention -> SwiGLU MLP -> decoder layer -> the causal LM. Module names follow Hugging Face's
// LlamaForCausalLM, so state_dict() keys are exactly the keys of a transformers checkpoint: model.embed_tokens.weight,
// model.layers.{i}.self_attn.{q,k,v,o}_proj.weight, model.layers.{i}.mlp.{gate,up,down}_proj.weight,
// model.layers.{i}.{input,post_attention}_layernorm.weight, model.norm.weight and lm_head.weight; with attention_bias
// also {q,k,v}_proj.bias, and for Qwen3 model.layers.{i}.self_attn.{q,k}_norm.weight.
//
// Tied embeddings (config.TieWordEmbeddings): there is no lm_head module at all; the head multiplies by
// model.embed_tokens.weight. state_dict() then has no lm_head.weight, which is what Hugging Face writes to the file
// for tied models, so a state dict saves and loads one-to-one.

/// <summary>Root-mean-square layer norm, computed in float32 like Hugging Face's LlamaRMSNorm.</summary>
internal sealed class LlamaRMSNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // field names are the state_dict keys
    private readonly double _eps;

    public LlamaRMSNorm(long size, double eps) : base("LlamaRMSNorm")
    {
        weight = nn.Parameter(ones(size));
        _eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * rsqrt(xf.pow(2).mean([-1], keepdim: true) + _eps);
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>Keys and values of past positions, one pair per layer, for incremental decoding.</summary>
internal sealed class KvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;

    internal KvCache(int layers)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>Positions already cached; new tokens continue from here.</summary>
    public long Length => _keys[0]?.shape[2] ?? 0;

    /// <summary>Appends this layer's new keys/values [B, kvHeads, T, headDim] and returns all of them so far.</summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        var oldKeys = _keys[layer];
        var oldValues = _values[layer];
        // The cache outlives whatever dispose scope the caller runs a decoding step in.
        var allKeys = (oldKeys is null ? keys.alias() : cat([oldKeys, keys], 2)).DetachFromDisposeScope();
        var allValues = (oldValues is null ? values.alias() : cat([oldValues, values], 2)).DetachFromDisposeScope();
        oldKeys?.Dispose();
        oldValues?.Dispose();
        _keys[layer] = allKeys;
        _values[layer] = allValues;
        return (allKeys, allValues);
    }

    public void Dispose()
    {
        for (var i = 0; i < _keys.Length; i++)
        {
            _keys[i]?.Dispose();
            _values[i]?.Dispose();
            _keys[i] = _values[i] = null;
        }
    }
}

/// <summary>
/// Rotary position embedding as Hugging Face computes it: frequencies duplicated, rotate_half pairing (i, i + d/2).
/// </summary>
internal static class Rotary
{
    /// <param name="inverseFrequencies">head_dim / 2 values, from
    /// <see cref="LlamaConfig.RopeInverseFrequencies"/>.</param>
    public static (Tensor Cos, Tensor Sin) CosSin(long start, long length, float[] inverseFrequencies, Device device,
        ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var positions = arange(start, start + length, 1, ScalarType.Int64, device).to(ScalarType.Float32);
        var frequencies = outer(positions, tensor(inverseFrequencies, device: device));
        var angles = cat([frequencies, frequencies], -1);
        return (angles.cos().to(dtype).MoveToOuterDisposeScope(), angles.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>cos and sin [B, 1, T, D] at explicit positions [B, T] (packed rows restart them per example).</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, float[] inverseFrequencies, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var frequencies = positionIds.to(ScalarType.Float32).unsqueeze(-1) * tensor(inverseFrequencies,
            device: positionIds.device);
        var angles = cat([frequencies, frequencies], -1).unsqueeze(1);
        return (angles.cos().to(dtype).MoveToOuterDisposeScope(), angles.sin().to(dtype).MoveToOuterDisposeScope());
    }

    public static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        return cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    /// <summary>x [B, H, T, D]; cos and sin [T, D] or [B, 1, T, D].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin) => x * cos + RotateHalf(x) * sin;
}

internal sealed class LlamaAttention : nn.Module
{
    // Typed as modules rather than Linear so that LoRA (Lora/LoraAdapter.cs) can put an adapter wrapper in their place.
    private nn.Module<Tensor, Tensor> q_proj, k_proj, v_proj, o_proj;
    private readonly LlamaRMSNorm? q_norm, k_norm;
    private readonly int _heads, _kvHeads, _headDim;

    public LlamaAttention(LlamaConfig config) : base("LlamaAttention")
    {
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        q_proj = nn.Linear(config.HiddenSize, _heads * _headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, _kvHeads * _headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, _kvHeads * _headDim, hasBias: config.AttentionBias);
        o_proj = nn.Linear(_heads * _headDim, config.HiddenSize, hasBias: false);
        if (config.QkNorm)
        {
            q_norm = new LlamaRMSNorm(_headDim, config.RmsNormEps);
            k_norm = new LlamaRMSNorm(_headDim, config.RmsNormEps);
        }
        RegisterComponents();
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="mask">Boolean [B, 1, T, past + T] (true = may attend), or null for plain causal attention.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        var (batch, length) = (x.shape[0], x.shape[1]);
        var q = q_proj.forward(x).view(batch, length, _heads, _headDim);
        var k = k_proj.forward(x).view(batch, length, _kvHeads, _headDim);
        if (q_norm is not null && k_norm is not null)
        {
            q = q_norm.forward(q);
            k = k_norm.forward(k);
        }
        q = q.transpose(1, 2);
        k = k.transpose(1, 2);
        var v = v_proj.forward(x).view(batch, length, _kvHeads, _headDim).transpose(1, 2);
        q = Rotary.Apply(q, cos, sin);
        k = Rotary.Apply(k, cos, sin);
        if (cache is not null) (k, v) = cache.Append(layer, k, v);

        var attended = Attend(q, k, v, mask, causal: length > 1);
        return o_proj.forward(attended.transpose(1, 2).reshape(batch, length, _heads * _headDim));
    }

    /// <summary>Scores [B, H, T, T] of at most this many bytes go through <see cref="BlockedCausal"/>.</summary>
    internal const long BlockedScoreBytes = 64L << 20;

    /// <summary>Query rows per block of <see cref="BlockedCausal"/>.</summary>
    internal const int BlockedQueryRows = 96;

    /// <summary>
    /// Attention of q [B, H, T, D] over k and v [B, kvHeads, S, D] (grouped-query: each key/value head serves H / kvHeads
    /// query heads, adjacent in order), with a boolean mask [B, 1, T, S] (true = may attend) or causal. Usually
    /// libtorch's fused scaled_dot_product_attention. On a CPU, bfloat16 and float16 inputs are attended in float32
    /// and the result cast back: libtorch's bfloat16 CPU kernel took 2.6x the float32 one's time at the CPU job's shape
    /// (forward and backward of [16, 8, 112, 32]: 28 ms vs 11 ms; the same at Qwen2.5-0.5B's [4, 14, 384, 64]), and
    /// float32 is the more precise. Plain causal attention of float32 inputs on a CPU, with scores of at most
    /// <see cref="BlockedScoreBytes"/>, goes through <see cref="BlockedCausal"/> instead, in training and out of it
    /// alike (a checkpointed layer's recompute then equals its forward). Not bfloat16 on a CPU: the CPU job keeps its
    /// measured figures (its 663 bfloat16 steps amplify a change at rounding to 0.04 in the validation loss).
    /// </summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal)
    {
        var (batch, heads, length) = (q.shape[0], q.shape[1], q.shape[2]);
        if (mask is null && causal && q.device.type == DeviceType.CPU && q.dtype == ScalarType.Float32
            && k.shape[2] == length && batch * heads * length * length * q.ElementSize <= BlockedScoreBytes)
            return BlockedCausal(q, k, v);
        var groups = heads / k.shape[1];
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        // The repeat comes before the cast, as it always did: in bfloat16 runs SDPA's inputs, and so the CPU job's
        // figures, stay bit for bit the same.
        if (q.device.type == DeviceType.CPU && q.dtype is ScalarType.BFloat16 or ScalarType.Float16)
            return Fused(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32), mask, causal)
                .to(q.dtype);
        return Fused(q, k, v, mask, causal);
    }

    private static Tensor Fused(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal) => mask is not null
        ? F.scaled_dot_product_attention(q, k, v, attn_mask: mask)
        : F.scaled_dot_product_attention(q, k, v, is_casual: causal);

    /// <summary>
    /// Causal attention written out, a block of <see cref="BlockedQueryRows"/> query rows at a time against only the
    /// keys up to the block's last row, so that most of the score matrix above the diagonal is never computed; the
    /// query heads of a key/value head go through one product (no repeated keys). Forward and backward took 40 ms
    /// against the fused kernel's 60 ms at [4, 14, 384, 64] with 2 key/value heads, float32 on 2 cores (the fused
    /// kernel's backward works in 64-row tiles of small products); a 4-layer LoRA step of that shape, A/B in one
    /// process, went from 3.85 to 3.75 s. It keeps the probabilities for backward, about 60 % of B·H·T² floats at
    /// T = 384, hence the bound on the scores' size.
    /// </summary>
    internal static Tensor BlockedCausal(Tensor q, Tensor k, Tensor v)
    {
        var (batch, heads, length, headDim) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var kvHeads = k.shape[1];
        var groups = heads / kvHeads;
        var scale = 1 / Math.Sqrt(headDim);
        var positions = arange(length, device: q.device);
        var blocks = new List<Tensor>();
        for (long start = 0; start < length; start += BlockedQueryRows)
        {
            var rows = Math.Min(BlockedQueryRows, length - start);
            var keys = start + rows;
            var query = q.narrow(2, start, rows).reshape(batch, kvHeads, groups * rows, headDim);
            var scores = query.matmul(k.narrow(2, 0, keys).transpose(2, 3)).mul_(scale)
                .view(batch, kvHeads, groups, rows, keys);
            var later = positions.narrow(0, 0, keys).unsqueeze(0).gt(positions.narrow(0, start, rows).unsqueeze(1));
            var probabilities = scores.masked_fill(later, double.NegativeInfinity).softmax(-1)
                .view(batch, kvHeads, groups * rows, keys);
            blocks.Add(probabilities.matmul(v.narrow(2, 0, keys)).view(batch, heads, rows, headDim));
        }
        return blocks.Count == 1 ? blocks[0] : cat(blocks, 2);
    }
}

internal sealed class LlamaMLP : nn.Module<Tensor, Tensor>
{
    // Typed as modules rather than Linear so that LoRA (Lora/LoraAdapter.cs) can put an adapter wrapper in their place.
    private nn.Module<Tensor, Tensor> gate_proj, up_proj, down_proj;

    public LlamaMLP(LlamaConfig config) : base("LlamaMLP")
    {
        gate_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        up_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: false);
        down_proj = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => down_proj.forward(F.silu(gate_proj.forward(x)) * up_proj.forward(x));
}

internal sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMLP mlp;
    private readonly LlamaRMSNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(LlamaConfig config) : base("LlamaDecoderLayer")
    {
        self_attn = new LlamaAttention(config);
        mlp = new LlamaMLP(config);
        input_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        post_attention_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer)
    {
        x = x + self_attn.Forward(input_layernorm.forward(x), cos, sin, mask, cache, layer);
        return x + mlp.forward(post_attention_layernorm.forward(x));
    }
}

/// <summary>
/// The decoder stack without the head; Hugging Face calls it LlamaModel (the "model." prefix of the keys).
/// </summary>
internal sealed class LlamaModel : nn.Module
{
    private readonly Embedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRMSNorm norm;

    public LlamaModel(LlamaConfig config) : base("LlamaModel")
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>();
        for (var i = 0; i < config.NumHiddenLayers; i++) layers.Add(new LlamaDecoderLayer(config));
        norm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        RegisterComponents();
    }

    public Embedding EmbedTokens => embed_tokens;

    public Tensor Forward(Tensor inputIds, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, bool checkpointLayers)
    {
        var x = embed_tokens.forward(inputIds);
        for (var i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (checkpointLayers)
            {
                var trainable = layer.parameters().Where(p => p.requires_grad).ToList<Tensor>();
                Tensor[] constants = mask is null ? [cos, sin] : [cos, sin, mask];
                x = GradientCheckpoint.Run((h, c) => layer.Forward(h, c[0], c[1], c.Length > 2 ? c[2] : null, null, 0),
                    x, constants, trainable);
            }
            else x = layer.Forward(x, cos, sin, mask, cache, i);
        }
        return norm.forward(x);
    }
}

internal sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly Linear? lm_head;

    public LlamaConfig Config { get; }

    /// <summary>
    /// Recompute each decoder layer in backward instead of keeping its activations (see
    /// <see cref="GradientCheckpoint"/>); applies only while grad is enabled and no KV cache is used. Results are
    /// unchanged.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    private readonly float[] _ropeInverseFrequencies;

    public LlamaForCausalLM(LlamaConfig config) : base("LlamaForCausalLM")
    {
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
            throw new ArgumentException($"num_key_value_heads {config.NumKeyValueHeads} does not divide " +
                $"num_attention_heads {config.NumAttentionHeads}");
        Config = config;
        _ropeInverseFrequencies = config.RopeInverseFrequencies().Select(f => (float)f).ToArray();
        model = new LlamaModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    /// <summary>
    /// Final hidden states [B, T, hidden] (after the last RMSNorm).
    /// <paramref name="attentionMask"/> [B, T] (or [B, past + T] with a cache) holds 1 for real tokens and 0 for
    /// padding (may be null: right-padding never changes the states of real tokens under a causal mask).
    /// With a <paramref name="cache"/>, the new positions continue from <see cref="KvCache.Length"/>, attend to
    /// the cached ones and are appended to it.
    /// Packed rows (several examples in one row) pass <paramref name="positionIds"/> [B, T] restarting at 0 per
    /// example and <paramref name="documentIds"/> [B, T] numbering the examples: a token attends only to earlier
    /// tokens of its own document, so each example computes exactly what it would alone (no cache with these).
    /// </summary>
    public Tensor Hidden(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null,
        Tensor? positionIds = null, Tensor? documentIds = null)
    {
        using var scope = NewDisposeScope();
        var length = inputIds.shape[1];
        var past = cache?.Length ?? 0;
        var dtype = model.EmbedTokens.weight!.dtype;
        var (cos, sin) = positionIds is null
            ? Rotary.CosSin(past, length, _ropeInverseFrequencies, inputIds.device, dtype)
            : Rotary.CosSin(positionIds, _ropeInverseFrequencies, dtype);
        var mask = documentIds is null
            ? AttentionMask(attentionMask, past, length, Config.SlidingWindow, inputIds.device)
            : DocumentMask(documentIds, attentionMask, Config.SlidingWindow);
        var checkpointLayers = GradientCheckpointing && cache is null && is_grad_enabled();
        return model.Forward(inputIds, cos, sin, mask, cache, checkpointLayers).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Block-diagonal causal mask [B, 1, T, T]: same document, not later, within the sliding window; minus padded keys.
    /// </summary>
    private static Tensor DocumentMask(Tensor documentIds, Tensor? attentionMask, int? slidingWindow)
    {
        var length = documentIds.shape[1];
        var positions = arange(0, length, 1, ScalarType.Int64, documentIds.device);
        var queryPositions = positions.unsqueeze(1);
        var keyPositions = positions.unsqueeze(0);
        var visible = keyPositions.le(queryPositions);
        if (slidingWindow is { } w && length > w) visible = visible.logical_and(keyPositions.gt(queryPositions - w));
        var sameDocument = documentIds.unsqueeze(2).eq(documentIds.unsqueeze(1)); // [B, T, T]
        var mask = sameDocument.logical_and(visible).unsqueeze(1);
        if (attentionMask is not null)
            mask = mask.logical_and(attentionMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1));
        return mask;
    }

    /// <summary>
    /// The boolean mask SDPA needs when plain causal attention is not enough: queries at absolute positions
    /// past..past+T-1 see keys up to their own position (and, with a sliding window, no further back than
    /// window - 1 positions), minus padded keys. Null when is_causal does the job.
    /// </summary>
    private static Tensor? AttentionMask(Tensor? attentionMask, long past, long length, int? slidingWindow,
        Device device)
    {
        var total = past + length;
        var windowCuts = slidingWindow is { } w && total > w;
        if (attentionMask is null && (past == 0 || length == 1) && !windowCuts) return null;
        var queryPositions = arange(past, total, 1, ScalarType.Int64, device).unsqueeze(1);
        var keyPositions = arange(0, total, 1, ScalarType.Int64, device).unsqueeze(0);
        var visible = keyPositions.le(queryPositions);
        if (windowCuts) visible = visible.logical_and(keyPositions.gt(queryPositions - slidingWindow!.Value));
        var mask = visible.unsqueeze(0).unsqueeze(0); // [1, 1, T, total]
        if (attentionMask is not null)
        {
            var keys = attentionMask.shape[1] == total
                ? attentionMask
                : attentionMask.shape[1] == length && past > 0
                    ? cat([ones(attentionMask.shape[0], past, ScalarType.Int64, device),
                        attentionMask.to(ScalarType.Int64)], 1)
                    : throw new ArgumentException($"attention mask covers {attentionMask.shape[1]} positions, " +
                        $"expected {length} or {total}");
            mask = mask.logical_and(keys.to(ScalarType.Bool).unsqueeze(1).unsqueeze(1));
            // A padded query would see no key at all, and its NaN output would poison the cache (NaN * 0 is NaN);
            // letting it see itself keeps it finite and changes nothing for real tokens, which see themselves anyway.
            mask = mask.logical_or(keyPositions.eq(queryPositions).unsqueeze(0).unsqueeze(0));
        }
        return mask;
    }

    /// <summary>The output head: hidden states [..., hidden] to logits [..., vocab].</summary>
    public Tensor Logits(Tensor hidden) => F.linear(hidden, HeadWeight);

    /// <summary>The output head's weight [vocab, hidden]: lm_head's, or the embedding's when tied.</summary>
    public Parameter HeadWeight => lm_head?.weight ?? model.EmbedTokens.weight!;

    public KvCache NewCache() => new(Config.NumHiddenLayers);

    /// <summary>
    /// Deterministic initialisation from the seed: every matrix normal(0, 0.02), the output projections of each
    /// residual branch (o_proj, down_proj) scaled by 1/sqrt(2 * layers) as in GPT-2, norms at 1. Parameters are
    /// drawn in state_dict order from a private generator, so the global RNG is left alone.
    /// </summary>
    public void InitializeWeights(long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var noGrad = no_grad();
        var residualStd = 0.02 / Math.Sqrt(2.0 * Config.NumHiddenLayers);
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) parameter.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) parameter.zero_();
            else if (name.EndsWith("o_proj.weight", StringComparison.Ordinal)
                || name.EndsWith("down_proj.weight", StringComparison.Ordinal))
                parameter.normal_(0, residualStd, generator);
            else parameter.normal_(0, 0.02, generator);
        }
    }

    /// <summary>
    /// Parameters of the decoder layers and final norm: all but the embedding and the head (FLOP estimates count the
    /// head apart).
    /// </summary>
    public long NonEmbeddingParameterCount() =>
        parameters().Sum(p => p.numel()) - model.EmbedTokens.weight!.numel() - (lm_head?.weight!.numel() ?? 0);
}
