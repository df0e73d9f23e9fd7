using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// Gradient checkpointing of one decoder layer, as PyTorch's reentrant torch.utils.checkpoint does it (TorchSharp has
/// no helper): forward runs the layer without building a graph and keeps only its input; backward runs the layer
/// again with grad enabled and backpropagates through that fresh graph, which accumulates the gradients of the layer's
/// parameters (LoRA adapters included) directly and hands the input's gradient on. Activation memory drops from every
/// layer's intermediates to one hidden state per layer, for about one extra forward pass of compute.
/// Dropout (LoRA's) draws the same masks again because its masks are seeded by their position in the
/// <see cref="SeededDropout"/> stream: the forward keeps the position the layer started at and the recompute starts
/// there again, on any device, without touching a generator's state.
/// </summary>
internal sealed class GradientCheckpoint : autograd.SingleTensorFunction<GradientCheckpoint>
{
    public override string Name => "GradientCheckpoint";

    public delegate Tensor Layer(Tensor x, Tensor[] constants);

    /// <summary>What backward needs beyond the saved tensors.</summary>
    private sealed record Call(Layer Layer, int ArgumentCount, bool InputNeedsGrad, SeededDropout.Position Dropout);

    /// <summary>
    /// Layers recomputed by backward on this thread (CPU backward runs on the caller's thread); for tests.
    /// </summary>
    [ThreadStatic] internal static long Recomputations;

    /// <summary>
    /// Runs <paramref name="layer"/>(x, constants) checkpointed. <paramref name="constants"/> are tensors the layer
    /// reads but never differentiates (rotary cos/sin, the mask): they are saved with x, because the caller's dispose
    /// scope ends before backward. <paramref name="trainable"/> are the layer's parameters that require grad: as
    /// inputs they make the node part of the graph even when x needs no gradient (LoRA over a frozen embedding).
    /// </summary>
    public static Tensor Run(Layer layer, Tensor x, Tensor[] constants, IReadOnlyList<Tensor> trainable)
    {
        var args = new List<object> { x, constants.Length };
        args.AddRange(constants);
        args.AddRange(trainable);
        args.Add(layer);
        return apply([.. args]);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var constants = vars.Skip(2).Take((int)vars[1]).Cast<Tensor>().ToArray();
        var layer = (Layer)vars[^1];
        ctx.save_for_backward([x, .. constants]);
        ctx.save_data("call", new Call(layer, vars.Length, x.requires_grad, SeededDropout.Current));
        // An output whose gradient is undefined (nothing after it needed one) contributes none. Materialising zeros
        // instead would read TorchSharp's copy of the output, which the caller's dispose scope has already released.
        ctx.set_materialize_grads(false);
        using var scope = NewDisposeScope();
        // apply() runs forward with grad disabled: no graph, so every intermediate is freed with this scope.
        return layer(x, constants).MoveToOuterDisposeScope();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var call = (Call)ctx.get_data("call");
        var grads = new List<Tensor>(call.ArgumentCount);
        if (gradOutput is null || gradOutput.IsInvalid)
        {
            for (var i = 0; i < call.ArgumentCount; i++) grads.Add(null!);
            return grads;
        }
        Tensor? inputGrad = null;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            var input = saved[0].detach().requires_grad_(call.InputNeedsGrad);
            // The stream's position after the forward pass stays as it was, should a later layer still draw.
            var current = SeededDropout.Current;
            SeededDropout.MoveTo(call.Dropout);
            try
            {
                using var grad = enable_grad();
                autograd.backward([call.Layer(input, [.. saved.Skip(1)])], [gradOutput]);
            }
            finally
            {
                SeededDropout.MoveTo(current);
            }
            Recomputations++;
            if (call.InputNeedsGrad) inputGrad = input.grad?.DetachFromDisposeScope();
            gradOutput.Dispose();
        }
        // After the recompute's own backward, whose functions hand on and release gradients of their own.
        HandedOnGradients.ReleasePrevious();
        HandedOnGradients.Keep(inputGrad);
        grads.Add(inputGrad!);
        for (var i = 1; i < call.ArgumentCount; i++) grads.Add(null!);
        return grads;
    }
}
