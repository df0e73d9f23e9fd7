using FineTune.Torch.Models;
using FineTune.Torch.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Training;

/// <summary>The chunked head loss is the full one: the same sum and the same gradients (computed in forward, chunk by
/// chunk, then scaled by the gradient that reaches the loss), and none where nothing needs one.</summary>
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

        Assert.Equal(before, GradientCheckpoint.Recomputations); // the chunks' gradients come from forward: nothing recomputed
        Assert.Equal(full.item<float>(), chunked.item<float>(), 3);
        Assert.True(chunked.item<float>() > 100); // a sum over 37 rows of ~ln(260) each: 3 decimals is ~1e-5 relative; gradients are up to ~3, so atol 1e-5 is float rounding
        Assert.True(allclose(fullHidden.grad!, chunkedHidden.grad!, rtol: 1e-5, atol: 1e-5), "hidden gradients differ");
        Assert.True(allclose(fullHeadGrad, head.grad!, rtol: 1e-5, atol: 1e-5), $"head gradients differ {tied}: {(fullHeadGrad - head.grad!).abs().max().item<float>()} of {fullHeadGrad.abs().max().item<float>()}");
    }

    [Fact]
    public void The_gradient_reaching_the_loss_scales_the_chunks_and_a_frozen_head_gets_none()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(tied: false, layers: 1));
        model.InitializeWeights(11);
        var head = model.HeadWeight;
        head.requires_grad_(false);
        var generator = new TorchSharp.torch.Generator(6);
        var hiddenValues = randn([20, model.Config.HiddenSize], generator: generator);
        var targets = randint(0, model.Config.VocabSize, [20], generator: generator);

        var fullHidden = hiddenValues.clone().requires_grad_(true);
        (F.cross_entropy(model.Logits(fullHidden), targets, reduction: nn.Reduction.Sum) * 0.25 / 20).backward();
        var chunkedHidden = hiddenValues.clone().requires_grad_(true);
        (ChunkedCrossEntropy.Sum(model, chunkedHidden, targets, chunkRows: 6) * 0.25 / 20).backward();

        Assert.Null(head.grad);
        Assert.True(allclose(fullHidden.grad!, chunkedHidden.grad!, rtol: 1e-5, atol: 1e-7), "hidden gradients differ");
        Assert.True(chunkedHidden.grad!.abs().max().item<float>() > 1e-4); // not all zero
    }

    [Fact]
    public void Without_grad_the_chunked_loss_is_the_full_loss()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 1));
        model.InitializeWeights(11);
        var hidden = randn([23, model.Config.HiddenSize]);
        var targets = randint(0, model.Config.VocabSize, [23]);
        using var noGrad = no_grad();
        var full = F.cross_entropy(model.Logits(hidden), targets, reduction: nn.Reduction.Sum).item<float>();
        Assert.Equal(full, ChunkedCrossEntropy.Sum(model, hidden, targets, chunkRows: 5).item<float>(), 3);
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
