using FineTune.Torch.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Training;

/// <summary>
/// The summed cross-entropy of the output head over many positions without the logits of all of them at once. Over
/// a large vocabulary they dominate memory: a 4 x 384 batch of Qwen's 151,936 tokens is 0.9 GB of float32 logits,
/// and cross-entropy keeps as much again for backward. Above <see cref="ElementsPerChunk"/> logits the positions go
/// through the head in chunks, and each chunk's gradients are computed right away, in forward, since they need
/// nothing that comes later: d(sum of cross-entropy)/d(logits) is softmax minus the one-hot target. Forward keeps
/// only the gradients of the hidden states and (when trained) of the head's weight, which backward scales by the
/// incoming gradient; no chunk's logits outlive it and none is computed twice (a checkpointed chunk would be).
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
        var weight = model.HeadWeight;
        if (rows <= perChunk) return HeadLoss(hidden, weight, targets);
        if (!is_grad_enabled() || !(hidden.requires_grad || weight.requires_grad))
        {
            Tensor? total = null;
            for (long start = 0; start < rows; start += perChunk)
            {
                var length = Math.Min(perChunk, rows - start);
                var loss = HeadLoss(hidden.narrow(0, start, length), weight, targets.narrow(0, start, length));
                total = total is null ? loss : total + loss;
            }
            return total!;
        }
        return HeadLossWithGradients.apply(hidden, targets, weight, perChunk);
    }

    private static Tensor HeadLoss(Tensor hidden, Tensor weight, Tensor targets) =>
        F.cross_entropy(F.linear(hidden, weight).to(ScalarType.Float32), targets, reduction: nn.Reduction.Sum);

    private sealed class HeadLossWithGradients : autograd.SingleTensorFunction<HeadLossWithGradients>
    {
        public override string Name => "ChunkedCrossEntropy";

        /// <summary>d loss / d hidden [rows, hidden] and d loss / d weight (float32), each null when not needed.</summary>
        private sealed record Gradients(Tensor? Hidden, Tensor? Weight, ScalarType WeightType);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (hidden, targets, weight, perChunk) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (long)vars[3]);
            var rows = hidden.shape[0];
            // Made here, used by backward: outside every dispose scope, released by backward.
            var hiddenGrad = hidden.requires_grad ? empty_like(hidden).DetachFromDisposeScope() : null;
            var weightGrad = weight.requires_grad
                ? zeros(weight.shape, ScalarType.Float32, weight.device).DetachFromDisposeScope() : null;
            var total = zeros([], ScalarType.Float32, hidden.device);
            for (long start = 0; start < rows; start += perChunk)
            {
                using var scope = NewDisposeScope();
                var length = Math.Min(perChunk, rows - start);
                var chunk = hidden.narrow(0, start, length);
                var chunkTargets = targets.narrow(0, start, length).unsqueeze(1);
                var logProbabilities = F.log_softmax(F.linear(chunk, weight).to(ScalarType.Float32), -1);
                total.sub_(logProbabilities.gather(1, chunkTargets).sum());
                // softmax - one_hot(target): the cross-entropy sum's gradient at the logits, in float32, then in the
                // weights' dtype for the two products (where autograd would cast it too).
                var logitsGrad = logProbabilities.exp_().scatter_add_(1, chunkTargets,
                    full([length, 1], -1f, ScalarType.Float32, hidden.device)).to(weight.dtype);
                hiddenGrad?.narrow(0, start, length).copy_(logitsGrad.mm(weight));
                weightGrad?.add_(logitsGrad.t().mm(chunk).to(ScalarType.Float32));
            }
            ctx.save_data("gradients", new Gradients(hiddenGrad, weightGrad, weight.dtype));
            return total;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            HandedOnGradients.ReleasePrevious();
            var gradients = (Gradients)ctx.get_data("gradients");
            Tensor? hidden = null, weight = null;
            if (gradOutput is not null && !gradOutput.IsInvalid)
            {
                hidden = gradients.Hidden?.mul(gradOutput.to(gradients.Hidden.dtype));
                weight = gradients.Weight?.mul(gradOutput).to(gradients.WeightType);
            }
            gradients.Hidden?.Dispose();
            gradients.Weight?.Dispose();
            HandedOnGradients.Keep(hidden);
            HandedOnGradients.Keep(weight);
            // One per forward argument: hidden, targets, weight, rows per chunk.
            return [hidden!, null!, weight!, null!];
        }
    }
}
