using FineTune.Torch.Models;
using FineTune.Torch.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Training;

/// <summary>The chunked head loss is the full one: the same sum and the same gradients, chunk by chunk.</summary>
public sealed class ChunkedCrossEntropyTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Chunked_loss_and_gradients_equal_the_full_cross_entropy(bool tied)
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(tied, layers: 1));
        model.InitializeWeights(11);
        var head = tied ? model.named_parameters().Single(p => p.name == "model.embed_tokens.weight").parameter
            : model.named_parameters().Single(p => p.name == "lm_head.weight").parameter;
        var generator = new TorchSharp.torch.Generator(5);
        var hiddenValues = randn([37, model.Config.HiddenSize], generator: generator);
        var targets = randint(0, model.Config.VocabSize, [37], generator: generator);

        var fullHidden = hiddenValues.clone().requires_grad_(true);
        model.zero_grad();
        var full = F.cross_entropy(model.Logits(fullHidden), targets, reduction: nn.Reduction.Sum);
        full.backward();
        var fullHeadGrad = head.grad!.clone();

        var chunkedHidden = hiddenValues.clone().requires_grad_(true);
        model.zero_grad();
        var before = GradientCheckpoint.Recomputations;
        var chunked = ChunkedCrossEntropy.Sum(model, chunkedHidden, targets, chunkRows: 8);
        chunked.backward();

        Assert.Equal(5, GradientCheckpoint.Recomputations - before); // 37 rows in chunks of 8: 5 recomputed in backward
        Assert.Equal(full.item<float>(), chunked.item<float>(), 3);
        Assert.True(chunked.item<float>() > 100); // a sum over 37 rows of ~ln(260) each: 3 decimals is ~1e-5 relative; gradients are up to ~3, so atol 1e-5 is float rounding
        Assert.True(allclose(fullHidden.grad!, chunkedHidden.grad!, rtol: 1e-5, atol: 1e-5), "hidden gradients differ");
        Assert.True(allclose(fullHeadGrad, head.grad!, rtol: 1e-5, atol: 1e-5), $"head gradients differ {tied}: {(fullHeadGrad - head.grad!).abs().max().item<float>()} of {fullHeadGrad.abs().max().item<float>()}");
    }

    [Fact]
    public void Few_logits_take_the_plain_path()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 1));
        var before = GradientCheckpoint.Recomputations;
        var hidden = randn([10, model.Config.HiddenSize]).requires_grad_(true);
        ChunkedCrossEntropy.Sum(model, hidden, zeros([10], ScalarType.Int64)).backward();
        Assert.Equal(before, GradientCheckpoint.Recomputations);
    }
}
