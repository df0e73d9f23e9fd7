using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Models;

// CONTRACT (filled in by the model work): a Llama decoder whose state-dict keys equal Hugging Face's
// (model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight, ..., model.norm.weight, lm_head.weight).

/// <summary>Keys and values of past positions, one pair per layer, for incremental decoding.</summary>
public sealed class KvCache : IDisposable
{
    public void Dispose() => throw new NotImplementedException();
}

public sealed class LlamaForCausalLM : nn.Module
{
    public LlamaConfig Config { get; }

    public LlamaForCausalLM(LlamaConfig config) : base("LlamaForCausalLM")
    {
        Config = config;
        throw new NotImplementedException();
    }

    /// <summary>
    /// Final hidden states [B, T, hidden] (after the last RMSNorm).
    /// <paramref name="attentionMask"/> [B, T] holds 1 for real tokens and 0 for right-padding (may be null).
    /// With a <paramref name="cache"/>, the new positions attend to the cached ones and are appended to it.
    /// </summary>
    public Tensor Hidden(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null) => throw new NotImplementedException();

    /// <summary>The output head: hidden states [..., hidden] to logits [..., vocab].</summary>
    public Tensor Logits(Tensor hidden) => throw new NotImplementedException();

    public KvCache NewCache() => throw new NotImplementedException();

    /// <summary>Deterministic initialisation from the seed (normal(0, 0.02), output projections scaled by depth).</summary>
    public void InitializeWeights(long seed) => throw new NotImplementedException();
}
