using FineTune.Torch.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Training;

/// <summary>
/// The summed cross-entropy of the output head over many positions without the logits of all of them at once. Over
/// a large vocabulary they dominate memory: a 4 x 384 batch of Qwen's 151,936 tokens is 0.9 GB of float32 logits,
/// and cross-entropy keeps as much again for backward. Above <see cref="ElementsPerChunk"/> logits the positions go
/// through the head in chunks, each checkpointed (<see cref="GradientCheckpoint"/>): forward keeps only each chunk's
/// loss, backward recomputes one chunk's logits at a time. The loss is the same sum, added chunk by chunk, for one
/// more head forward pass of compute.
/// </summary>
internal static class ChunkedCrossEntropy
{
    /// <summary>Logits per chunk: 2^24 float32 values, 64 MiB.</summary>
    public const long ElementsPerChunk = 1L << 24;

    /// <summary>
    /// Sum over rows of cross_entropy(head(<paramref name="hidden"/>), <paramref name="targets"/>) in float32;
    /// <paramref name="chunkRows"/> overrides the rows per chunk (tests).
    /// </summary>
    public static Tensor Sum(LlamaForCausalLM model, Tensor hidden, Tensor targets, long? chunkRows = null)
    {
        var rows = hidden.shape[0];
        var perChunk = chunkRows ?? Math.Max(1, ElementsPerChunk / model.Config.VocabSize);
        if (rows <= perChunk) return HeadLoss(model, hidden, targets);
        // The head's weight (lm_head, or the embedding when tied) is an input of each chunk when trained, so the
        // chunk stays in the graph even if the hidden states need no gradient.
        var head = model.named_parameters()
            .Where(p => p.parameter.requires_grad && (p.name.StartsWith("lm_head.", StringComparison.Ordinal)
                || (model.Config.TieWordEmbeddings && p.name == "model.embed_tokens.weight")))
            .Select(p => (Tensor)p.parameter).ToList();
        Tensor? total = null;
        for (long start = 0; start < rows; start += perChunk)
        {
            var length = Math.Min(perChunk, rows - start);
            var loss = GradientCheckpoint.Run((x, constants) => HeadLoss(model, x, constants[0]),
                hidden.narrow(0, start, length), [targets.narrow(0, start, length)], head);
            total = total is null ? loss : total + loss;
        }
        return total!;
    }

    private static Tensor HeadLoss(LlamaForCausalLM model, Tensor hidden, Tensor targets) =>
        F.cross_entropy(model.Logits(hidden).to(ScalarType.Float32), targets, reduction: nn.Reduction.Sum);
}
