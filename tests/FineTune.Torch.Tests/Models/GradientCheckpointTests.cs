using FineTune.TestKit;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Tests.Fakes;
using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Models;

/// <summary>Some tests reseed the process-wide CPU generator, so they must not run beside others that draw from it.</summary>
[CollectionDefinition(nameof(GlobalRandomGenerator), DisableParallelization = true)]
public sealed class GlobalRandomGenerator;

[Collection(nameof(GlobalRandomGenerator))]
public sealed class GradientCheckpointTests
{
    private static readonly long[] Ids = [5, 17, 3, 99, 42, 8, 250, 1, 64, 128, 7, 33];

    private static LlamaForCausalLM Model(bool tied = false, int layers = 3)
    {
        var model = new LlamaForCausalLM(TinyModels.Config(tied, layers) with { AttentionBias = true });
        model.InitializeWeights(11);
        model.train();
        return model;
    }

    /// <summary>Loss of a batch of two rows and every parameter's gradient, with or without checkpointing.</summary>
    private static (float Loss, Dictionary<string, Tensor> Grads, long Recomputed) LossAndGrads(
        LlamaForCausalLM model, bool checkpointing, long seed = 7, Action? betweenForwardAndBackward = null)
    {
        model.zero_grad();
        foreach (var p in model.parameters()) p.grad = null;
        model.GradientCheckpointing = checkpointing;
        SeededDropout.StartStream(seed, 0);
        var before = GradientCheckpoint.Recomputations;
        var batch = tensor(Ids.Concat(Ids.Reverse()).ToArray(), [2, Ids.Length]);
        var input = batch.narrow(1, 0, Ids.Length - 1);
        var target = batch.narrow(1, 1, Ids.Length - 1).reshape(-1);
        var logits = model.Logits(model.Hidden(input)).to(ScalarType.Float32);
        var loss = F.cross_entropy(logits.reshape(-1, logits.shape[^1]), target);
        betweenForwardAndBackward?.Invoke();
        loss.backward();
        var grads = model.named_parameters().Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => p.parameter.grad!.to(ScalarType.Float32).clone());
        return (loss.item<float>(), grads, GradientCheckpoint.Recomputations - before);
    }

    private static void AssertSameGradients(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, double tolerance)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, grad) in expected)
        {
            var difference = (grad - actual[name]).abs().max().item<float>();
            Assert.True(difference <= tolerance, $"{name}: gradients differ by {difference}");
            Assert.True(grad.abs().sum().item<float>() > 0, $"{name}: no gradient at all");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Full_model_loss_and_every_gradient_are_unchanged_and_each_layer_is_recomputed(bool tied)
    {
        using var model = Model(tied);
        var plain = LossAndGrads(model, checkpointing: false);
        var checkpointed = LossAndGrads(model, checkpointing: true);
        Assert.Equal(0, plain.Recomputed);
        Assert.Equal(3, checkpointed.Recomputed);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        Assert.Equal(model.parameters().Count(), plain.Grads.Count);
        AssertSameGradients(plain.Grads, checkpointed.Grads, 1e-6);
    }

    private static (LlamaForCausalLM Model, AppliedLora Applied) LoraModel(ScalarType dtype, double dropout)
    {
        var model = Model();
        model.to(dtype);
        var applied = LoraAdapter.Apply(model, new LoraOptions { R = 4, Alpha = 8, Dropout = dropout, TargetModules = LoraOptions.DecoderProjections, Seed = 1 });
        using (no_grad())
            foreach (var layer in applied.Layers.Values) layer.B.normal_(0, 0.05); // B = 0 would leave A without gradient
        return (model, applied);
    }

    [Theory]
    [InlineData(ScalarType.Float32, 0.0)]
    [InlineData(ScalarType.Float32, 0.2)]
    [InlineData(ScalarType.BFloat16, 0.2)]
    public void Lora_adapter_gradients_are_unchanged_with_dropout_and_a_bfloat16_base(ScalarType dtype, double dropout)
    {
        var (model, applied) = LoraModel(dtype, dropout);
        using var disposed = model;

        var plain = LossAndGrads(model, checkpointing: false);
        var checkpointed = LossAndGrads(model, checkpointing: true);
        Assert.Equal(3, checkpointed.Recomputed);
        Assert.Equal(applied.TrainableParameters.Count, plain.Grads.Count);
        Assert.Equal(plain.Loss, checkpointed.Loss);
        AssertSameGradients(plain.Grads, checkpointed.Grads, dtype == ScalarType.Float32 ? 1e-6 : 1e-3);

        if (dropout > 0)
        {
            // Another dropout draw changes the gradients: the equality above is not dropout being inert.
            var otherMasks = LossAndGrads(model, checkpointing: true, seed: 8);
            Assert.NotEqual(plain.Loss, otherMasks.Loss);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Dropout_masks_and_their_recompute_do_not_depend_on_the_global_generator(bool reseedDefaultGenerator)
    {
        // Reseeding the default generator before each draw is what non-CPU devices do, since TorchSharp gives them no
        // generator of their own: run here on the CPU, it shows the recompute needs no generator state saved, as on CUDA.
        using var model = LoraModel(ScalarType.Float32, 0.2).Model;
        SeededDropout.t_reseedDefaultGenerator = reseedDefaultGenerator;
        try
        {
            random.manual_seed(1);
            var plain = LossAndGrads(model, checkpointing: false);
            random.manual_seed(2);
            var checkpointed = LossAndGrads(model, checkpointing: true, betweenForwardAndBackward: () =>
            {
                random.manual_seed(3);
                rand(1000).Dispose();
            });
            Assert.Equal(3, checkpointed.Recomputed);
            Assert.Equal(plain.Loss, checkpointed.Loss);
            AssertSameGradients(plain.Grads, checkpointed.Grads, 1e-6);
            Assert.NotEqual(plain.Loss, LossAndGrads(model, checkpointing: true, seed: 8).Loss); // dropout is on
        }
        finally
        {
            SeededDropout.t_reseedDefaultGenerator = false;
        }
    }

    [Fact]
    public void Evaluation_under_no_grad_does_not_checkpoint()
    {
        using var model = Model();
        model.GradientCheckpointing = true;
        model.eval();
        var before = GradientCheckpoint.Recomputations;
        using (no_grad())
        {
            var plain = TinyModels.LogitsOf(model, Ids);
            Assert.Equal(Ids.Length, plain.shape[0]);
        }
        Assert.Equal(before, GradientCheckpoint.Recomputations);
    }

    [Fact]
    public void A_layer_whose_output_gets_no_gradient_passes_none_back()
    {
        // The second layer ignores its input, so the first layer's output receives an undefined gradient. The first
        // runs in a dispose scope that has ended by backward, as a model's forward does (it crashed the test host).
        using var first = nn.Linear(4, 4);
        using var second = nn.Linear(4, 4);
        var x = randn(2, 4).requires_grad_(true);
        Tensor hidden;
        using (NewDisposeScope())
            hidden = GradientCheckpoint.Run((h, _) => first.forward(h), x, [], [.. first.parameters()]).MoveToOuterDisposeScope();
        var constant = ones(2, 4);
        var output = GradientCheckpoint.Run((_, c) => second.forward(c[0]), hidden, [constant], [.. second.parameters()]);

        output.sum().backward();

        Assert.Null(first.weight!.grad);
        Assert.Null(x.grad);
        var expectedWeightGrad = ones(4, 4) * 2; // d(sum of W·1 + b over 2 rows)/dW = 2 in every entry
        Assert.True(allclose(expectedWeightGrad, second.weight!.grad!), second.weight!.grad!.ToString(TorchSharp.TensorStringStyle.Numpy));
    }

    private static TokenizedDataset Dataset()
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < 16; i++)
        {
            var prompt = Enumerable.Range(0, 2 + i % 4).Select(t => 1 + (i * 5 + t) % 10).ToList();
            var answer = Enumerable.Range(0, 3 + i % 3).Select(t => 20 + (i + t * 3) % 19).ToList();
            builder.Add([.. prompt, .. answer], [.. prompt.Select(_ => TokenizedDataset.IgnoreLabel), .. answer]);
        }
        return builder.Build();
    }

    private static (List<double> Losses, Dictionary<string, Tensor> Weights) Train(bool checkpointing, string method)
    {
        var settings = new TrainSettings
        {
            Builtin = new BuiltinModelSettings { HiddenSize = 16, Layers = 2, Heads = 4, KvHeads = 2, IntermediateSize = 32 },
            Method = method, Epochs = 1, BatchSize = 4, GradientAccumulation = 2, LearningRate = 1e-2, Seed = 5, LogEvery = 1,
            GradientCheckpointing = checkpointing,
        };
        using var model = new LlamaForCausalLM(TrainStage.BuiltinConfig(settings.Builtin, 40));
        model.InitializeWeights(settings.Seed);
        if (method == "lora")
            LoraAdapter.Apply(model, new LoraOptions { R = 4, Dropout = 0.1, TargetModules = LoraOptions.DecoderProjections, Seed = 2 });
        var trainer = new Trainer(model, Dataset(), settings, CPU, new RecordingLog());
        trainer.Train(CancellationToken.None);
        return (trainer.Losses, trainer.Weights().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone()));
    }

    [Theory]
    [InlineData("full")]
    [InlineData("lora")]
    public void A_training_run_with_checkpointing_ends_at_the_same_weights(string method)
    {
        var plain = Train(checkpointing: false, method);
        var checkpointed = Train(checkpointing: true, method);
        Assert.Equal(2, plain.Losses.Count);
        Assert.Equal(plain.Losses, checkpointed.Losses);
        foreach (var (name, weight) in plain.Weights)
            Assert.True((weight - checkpointed.Weights[name]).abs().max().item<float>() <= 1e-6, name);
    }
}
