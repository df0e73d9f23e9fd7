using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.TestKit;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Training;

/// <summary>
/// transformers' recipe: its schedules' documented formulas at chosen steps, its weight-decay groups by parameter
/// name, and AdamW (bias correction, clipping, decoupled decay) against a plain-tensor reference written here.
/// </summary>
public sealed class RecipeTests
{
    private static double Rate(string type, int step, int total, int warmupSteps = 0, double warmupRatio = 0,
        double? minLrRatio = null) => LearningRateSchedule.At(new TrainSettings
        {
            LearningRate = 2.0, LrSchedulerType = type, WarmupSteps = warmupSteps, WarmupRatio = warmupRatio,
            MinLrRatio = minLrRatio,
        }, step, total) / 2.0;

    [Fact]
    public void Linear_warms_up_from_zero_then_falls_to_zero_after_the_last_step()
    {
        // lambda(s) = s / warmup while s < warmup, then (total - s) / (total - warmup); 10 steps, 2 of warmup.
        Assert.Equal(0.0, Rate("linear", 0, 10, warmupSteps: 2), 15);
        Assert.Equal(0.5, Rate("linear", 1, 10, warmupSteps: 2), 15);
        Assert.Equal(1.0, Rate("linear", 2, 10, warmupSteps: 2), 15);
        Assert.Equal(0.5, Rate("linear", 6, 10, warmupSteps: 2), 15);
        Assert.Equal(0.125, Rate("linear", 9, 10, warmupSteps: 2), 15);
        // The tutorial: no warmup, 699 steps: the full rate first, 1/699 of it last.
        Assert.Equal(1.0, Rate("linear", 0, 699), 15);
        Assert.Equal(1.0 / 699, Rate("linear", 698, 699), 15);
    }

    [Fact]
    public void Cosine_schedules_follow_half_a_cosine_from_the_end_of_warmup()
    {
        // progress p = (s - warmup) / (total - warmup); cosine 0.5 (1 + cos(pi p)); with min_lr: that * 0.9 + 0.1.
        Assert.Equal(0.5, Rate("cosine", 1, 10, warmupSteps: 2), 15);
        Assert.Equal(0.853553390593274, Rate("cosine", 4, 10, warmupSteps: 2), 14); // p = 1/4: (1 + 0.70710678) / 2
        Assert.Equal(0.5, Rate("cosine", 6, 10, warmupSteps: 2), 14);               // p = 1/2
        Assert.Equal(0.0380602337443566, Rate("cosine", 9, 10, warmupSteps: 2), 14); // p = 7/8: (1 - 0.92387953) / 2
        Assert.Equal(0.55, Rate("cosine_with_min_lr", 6, 10, warmupSteps: 2, minLrRatio: 0.1), 14);
        Assert.Equal(0.134254210369921, Rate("cosine_with_min_lr", 9, 10, warmupSteps: 2, minLrRatio: 0.1), 14);
        Assert.Equal(0.5, Rate("cosine_with_min_lr", 1, 10, warmupSteps: 2, minLrRatio: 0.1), 15); // warmup ignores it
    }

    [Fact]
    public void Constant_schedules_and_the_warmup_count()
    {
        Assert.Equal(1.0, Rate("constant", 0, 10), 15);
        Assert.Equal(1.0, Rate("constant", 9, 10), 15);
        Assert.Equal(0.25, Rate("constant_with_warmup", 1, 10, warmupSteps: 4), 15);
        Assert.Equal(1.0, Rate("constant_with_warmup", 4, 10, warmupSteps: 4), 15);
        // warmup_ratio rounds up: ceil(663 * 0.05 = 33.15) = 34 steps; warmup_steps wins over the ratio.
        Assert.Equal(34, LearningRateSchedule.WarmupSteps(new TrainSettings { WarmupRatio = 0.05 }, 663));
        Assert.Equal(5, LearningRateSchedule.WarmupSteps(new TrainSettings { WarmupRatio = 0.5, WarmupSteps = 5 }, 663));
        Assert.Equal(33.0 / 34, Rate("linear", 33, 663, warmupRatio: 0.05), 15);
    }

    [Fact]
    public void Max_steps_overrides_epochs_and_cycles_the_data()
    {
        // 933 micro-batches per epoch, 4 per step, each epoch ending in a step of 933 % 4 = 1: 234 steps an epoch.
        // 1,000 steps = 4 epochs (936 steps) + 64 steps of 4: 4 x 933 + 256 = 3,988 micro-batches, about 4.3 epochs.
        Assert.Equal(new StepSchedule(1000, 4, 3988), StepSchedule.For(933, 4, epochs: 3, maxSteps: 1000));
        // 3 epochs: 3 x (933 // 4) = 699 steps = 2 epochs (468) + 231 steps of 4: 2 x 933 + 924 = 2,790.
        Assert.Equal(new StepSchedule(699, 4, 2790), StepSchedule.For(933, 4, epochs: 3, maxSteps: -1));
    }

    [Theory]
    [InlineData("llama", new[] { "input_layernorm.weight", "post_attention_layernorm.weight" })]
    [InlineData("qwen2", new[] { "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.bias",
        "self_attn.k_proj.bias", "self_attn.v_proj.bias" })]
    [InlineData("qwen3", new[] { "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_norm.weight",
        "self_attn.k_norm.weight" })]
    public void Weight_decay_skips_biases_and_norm_weights_and_decays_embeddings(string type, string[] layerKept)
    {
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            ModelType = type, VocabSize = 10, HiddenSize = 16, IntermediateSize = 8, NumHiddenLayers = 1,
            NumAttentionHeads = 4, NumKeyValueHeads = 2, AttentionBias = type == "qwen2", HeadDim = 4,
        });
        var names = model.named_parameters().Select(p => p.name).ToList();
        var kept = names.Where(n => !WeightDecay.Applies(n)).Order(StringComparer.Ordinal);
        Assert.Equal(layerKept.Select(n => "model.layers.0." + n).Append("model.norm.weight").Order(StringComparer.Ordinal), kept);
        Assert.Contains("model.embed_tokens.weight", names.Where(WeightDecay.Applies));
        Assert.Contains("lm_head.weight", names.Where(WeightDecay.Applies));
        Assert.True(WeightDecay.Applies("model.layers.0.self_attn.q_proj.lora_A.weight"));
    }

    [Fact]
    public void Two_adamw_steps_equal_a_plain_tensor_reference_with_bias_correction_clipping_and_decoupled_decay()
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < 4; i++)
        {
            var ids = Enumerable.Range(0, 6 + i).Select(t => (7 * i + 5 * t) % 250 + 3).ToArray();
            var labels = ids.Select((id, t) => t < 3 ? TokenizedDataset.IgnoreLabel : id).ToArray();
            builder.Add(ids, labels);
        }
        var data = builder.Build();
        var settings = new TrainSettings
        {
            BatchSize = 4, GradientAccumulation = 1, MaxSteps = 2, LearningRate = 1e-2, LrSchedulerType = "linear",
            AdamBeta1 = 0.8, AdamBeta2 = 0.9, AdamEpsilon = 1e-6, WeightDecay = 0.1, MaxGradNorm = 0.05, Seed = 1,
            LogEvery = 1,
        };
        var config = Fakes.TinyModels.Config(layers: 1);
        using var trained = new LlamaForCausalLM(config);
        trained.InitializeWeights(7);
        var trainer = new Trainer(trained, data, settings, CPU, new RecordingLog());
        trainer.Train(CancellationToken.None);

        using var reference = new LlamaForCausalLM(config);
        reference.InitializeWeights(7);
        var parameters = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var weights = parameters.ToDictionary(p => p.Key, p => p.Value.detach().to(ScalarType.Float64).clone());
        var m = weights.ToDictionary(p => p.Key, p => zeros_like(p.Value));
        var v = weights.ToDictionary(p => p.Key, p => zeros_like(p.Value));
        var losses = new List<double>();
        for (var t = 1; t <= 2; t++)
        {
            reference.zero_grad();
            var labelCount = Enumerable.Range(0, 4).Sum(e => data.Labels(e).ToArray().Skip(1).Count(l => l != TokenizedDataset.IgnoreLabel));
            var loss = zeros(1);
            for (var e = 0; e < 4; e++)
            {
                var ids = data.Ids(e).ToArray();
                var labels = data.Labels(e).ToArray();
                var positions = Enumerable.Range(0, ids.Length - 1).Where(p => labels[p + 1] != TokenizedDataset.IgnoreLabel).ToArray();
                var hidden = reference.Hidden(tensor(ids[..^1].Select(i => (long)i).ToArray(), [1, ids.Length - 1]));
                var logits = reference.Logits(hidden.squeeze(0).index_select(0, tensor(positions.Select(p => (long)p).ToArray())));
                var targets = tensor(positions.Select(p => (long)labels[p + 1]).ToArray());
                loss = loss + F.cross_entropy(logits, targets, reduction: nn.Reduction.Sum);
            }
            loss = loss / labelCount;
            loss.backward();
            losses.Add(loss.item<float>());

            var grads = parameters.ToDictionary(p => p.Key, p => p.Value.grad!.to(ScalarType.Float64));
            var norm = Math.Sqrt(grads.Values.Sum(g => g.pow(2).sum().item<double>()));
            Assert.True(norm > settings.MaxGradNorm, $"gradient norm {norm} is not clipped; the test would not bite");
            var clip = Math.Min(1.0, settings.MaxGradNorm / (norm + 1e-6));
            var rate = settings.LearningRate * (2 - (t - 1)) / 2.0; // linear over 2 steps: 1, then 1/2
            foreach (var (name, w) in weights)
            {
                var g = grads[name] * clip;
                var decay = name.Contains("norm") ? 0 : settings.WeightDecay; // norm weights are not decayed
                w.mul_(1 - rate * decay);
                m[name] = m[name] * settings.AdamBeta1 + g * (1 - settings.AdamBeta1);
                v[name] = v[name] * settings.AdamBeta2 + g.pow(2) * (1 - settings.AdamBeta2);
                var mHat = m[name] / (1 - Math.Pow(settings.AdamBeta1, t));
                var vHat = v[name] / (1 - Math.Pow(settings.AdamBeta2, t));
                w.sub_(mHat / (vHat.sqrt() + settings.AdamEpsilon) * rate);
            }
            using (no_grad())
                foreach (var (name, p) in parameters) p.copy_(weights[name]);
        }

        Assert.Equal(losses.Count, trainer.Losses.Count);
        for (var i = 0; i < losses.Count; i++) Assert.Equal(losses[i], trainer.Losses[i], 5);
        foreach (var (name, actual) in trainer.Weights())
        {
            var difference = (actual.to(ScalarType.Float64) - weights[name]).abs().max().item<double>();
            Assert.True(difference < 2e-6, $"{name}: {difference}");
        }
        // The embedding was decayed (transformers decays it; this tool once did not): both decay paths are exercised.
        Assert.True(WeightDecay.Applies("model.embed_tokens.weight"));
    }
}
