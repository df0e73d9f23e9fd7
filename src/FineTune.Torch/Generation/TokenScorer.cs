using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Generation;

/// <summary>How likely a model finds a given sequence: what <c>dotnet finetune score</c> prints.</summary>
internal static class TokenScorer
{
    /// <summary>
    /// log p(ids[t] | ids[..t]) for t = 1..n-1, in natural log, computed in float32 from one forward pass (the
    /// first token has no prediction). Their negated mean is the sequence's mean negative log-likelihood.
    /// </summary>
    public static double[] NextTokenLogProbabilities(LlamaForCausalLM model, IReadOnlyList<int> ids)
    {
        if (ids.Count < 2) throw new ArgumentException("scoring needs at least two tokens", nameof(ids));
        var device = model.parameters().First().device;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var wasTraining = model.training;
        model.eval();
        try
        {
            var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count], device: device);
            var logits = model.Logits(model.Hidden(input))[0, ..^1].to(ScalarType.Float32);
            var targets = input[0, 1..].unsqueeze(1);
            var logProbabilities = nn.functional.log_softmax(logits, dim: -1).gather(1, targets).squeeze(1);
            return logProbabilities.cpu().data<float>().Select(v => (double)v).ToArray();
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }
}
