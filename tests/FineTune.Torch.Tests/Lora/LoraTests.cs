using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Tests.Fakes;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Lora;

public sealed class LoraTests : IDisposable
{
    private static readonly long[] Ids = [5, 17, 99, 3, 250, 42, 7, 128];
    private static readonly LoraOptions AllSeven = new()
    {
        R = 4, Alpha = 8, TargetModules = LoraOptions.DecoderProjections, Seed = 11,
    };

    private readonly string _root = Directory.CreateTempSubdirectory("lora-tests-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Llama3_8B_r8_on_all_seven_projections_has_the_tutorials_trainable_count()
    {
        var llama3_8B = new LlamaConfig
        {
            VocabSize = 128256, HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32,
            NumAttentionHeads = 32, NumKeyValueHeads = 8, MaxPositionEmbeddings = 8192,
        };
        var options = new LoraOptions { R = 8, Alpha = 32, TargetModules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] };

        var trainable = options.TrainableParameterCount(llama3_8B);
        Assert.Equal(20_971_520, trainable);
        Assert.Equal(8_030_261_248, LoraAdapter.BaseParameterCount(llama3_8B));
        var share = (double)trainable / (LoraAdapter.BaseParameterCount(llama3_8B) + trainable);
        Assert.Equal(0.26, Math.Round(share * 100, 2));
        Assert.Equal(trainable, (options with { TargetModules = [LoraOptions.AllLinear] }).TrainableParameterCount(llama3_8B));
    }

    [Fact]
    public void Apply_counts_agree_with_the_formula_and_the_model()
    {
        using var model = TinyModels.Create();
        var baseCount = model.parameters().Sum(p => p.numel());
        Assert.Equal(LoraAdapter.BaseParameterCount(model.Config), baseCount);

        var applied = LoraAdapter.Apply(model, AllSeven);

        Assert.Equal(AllSeven.TrainableParameterCount(model.Config), applied.TrainableCount);
        Assert.Equal(baseCount + applied.TrainableCount, applied.TotalCount);
        Assert.Equal(2 * 7 * 2, applied.TrainableParameters.Count);
        Assert.Equal(14, applied.Layers.Count);
    }

    [Fact]
    public void Adapters_are_registered_under_PEFT_names_and_base_keys_stay_those_of_the_checkpoint()
    {
        using var model = TinyModels.Create();
        var baseKeys = model.state_dict().Keys.ToList();
        var applied = LoraAdapter.Apply(model, new LoraOptions { R = 2, TargetModules = ["q_proj", "down_proj"] });

        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.Equal(
            [
                "model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight",
                "model.layers.0.mlp.down_proj.lora_A.weight", "model.layers.0.mlp.down_proj.lora_B.weight",
                "model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight",
                "model.layers.1.mlp.down_proj.lora_A.weight", "model.layers.1.mlp.down_proj.lora_B.weight",
            ],
            trainable);
        var keysAfter = model.state_dict().Keys.Where(k => !k.Contains(".lora_")).ToList();
        Assert.Equal(baseKeys, keysAfter); // same names, same order
        Assert.All(model.named_parameters().Where(p => !p.name.Contains(".lora_")), p => Assert.False(p.parameter.requires_grad));
        Assert.Equal(applied.TrainableParameters.Sum(p => p.numel()), model.parameters().Where(p => p.requires_grad).Sum(p => p.numel()));

        var a = applied.Layers["model.layers.0.self_attn.q_proj"].A;
        var bound = 1.0 / Math.Sqrt(model.Config.HiddenSize);
        Assert.Equal(ScalarType.Float32, a.dtype);
        Assert.True(a.abs().max().item<float>() <= bound);
        Assert.True(a.abs().max().item<float>() > bound / 2); // drawn, not left at zero
        Assert.Equal(0f, applied.Layers["model.layers.0.self_attn.q_proj"].B.abs().sum().item<float>());
    }

    [Fact]
    public void At_step_zero_the_adapted_model_computes_exactly_the_base_logits()
    {
        using var model = TinyModels.Create();
        var before = TinyModels.LogitsOf(model, Ids);
        LoraAdapter.Apply(model, AllSeven with { Dropout = 0.1 });
        var after = TinyModels.LogitsOf(model, Ids);
        Assert.True(before.eq(after).all().item<bool>());
    }

    [Fact]
    public void A_bfloat16_base_keeps_float32_adapters_and_its_own_output_dtype()
    {
        using var model = TinyModels.Create();
        model.to(ScalarType.BFloat16);
        var before = TinyModels.LogitsOf(model, Ids);
        var applied = LoraAdapter.Apply(model, AllSeven);
        Assert.All(applied.TrainableParameters, p => Assert.Equal(ScalarType.Float32, p.dtype));
        var after = TinyModels.LogitsOf(model, Ids);
        Assert.Equal(ScalarType.BFloat16, after.dtype);
        Assert.True(before.eq(after).all().item<bool>());
    }

    [Theory]
    [InlineData(0.0, true, true)]
    [InlineData(0.3, true, true)]
    [InlineData(0.3, false, false)]
    public void In_training_a_layer_adds_scale_B_A_dropout_x_and_its_adapter_gradients_match(double p, bool hasBias, bool inputNeedsGrad)
    {
        // PEFT's formula with nn.Dropout (zero with probability p, scale the rest by 1/(1-p)), written out here, against
        // the layer, which puts both scales on the rank side, accumulates the update in the base's product and (on a
        // CPU in float32) redraws the mask in backward instead of keeping it.
        using var generator = new torch.Generator(5);
        var layer = new LoraLinear(nn.Linear(24, 40, hasBias: hasBias), rank: 4, alpha: 8, dropout: p, useRslora: false,
            generator);
        using (no_grad()) layer.B.normal_(0, 0.5, generator);
        layer.train();
        var x = randn([2, 5, 24], generator: generator).requires_grad_(inputNeedsGrad);

        SeededDropout.StartStream(seed: 7, stream: 0);
        var start = SeededDropout.Current;
        var actual = layer.forward(x);
        actual.pow(2).sum().backward();
        var (gradA, gradB, gradX) = (layer.A.grad!.clone(), layer.B.grad!.clone(), x.grad?.clone());
        Assert.Equal(inputNeedsGrad, gradX is not null);
        layer.A.grad!.zero_();
        layer.B.grad!.zero_();
        x.grad?.zero_();

        SeededDropout.MoveTo(start);
        var dropped = SeededDropout.Apply(x, p, training: true);
        var expected = F.linear(x, layer.BaseWeight, layer.BaseBias)
            + F.linear(F.linear(dropped, layer.A), layer.B) * layer.Scale;
        expected.pow(2).sum().backward();

        Assert.Equal(new long[] { 2, 5, 40 }, actual.shape);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-5));
        Assert.True(gradA.allclose(layer.A.grad!, rtol: 1e-4, atol: 1e-4));
        Assert.True(gradB.allclose(layer.B.grad!, rtol: 1e-4, atol: 1e-4));
        if (inputNeedsGrad) Assert.True(gradX!.allclose(x.grad!, rtol: 1e-4, atol: 1e-4));
        if (p > 0) Assert.False(dropped.eq(x).all().item<bool>()); // the mask dropped something: the test bites
    }

    [Fact]
    public void Backward_gives_gradients_only_to_the_adapters()
    {
        using var model = TinyModels.Create();
        var applied = LoraAdapter.Apply(model, AllSeven with { Dropout = 0.1 });
        model.train();
        RandomizeB(applied); // with B at zero, A's gradient would be zero too; make both flow

        var input = tensor(Ids[..^1], [1, Ids.Length - 1]);
        var target = tensor(Ids[1..], [Ids.Length - 1]);
        var logits = model.Logits(model.Hidden(input)).squeeze(0);
        F.cross_entropy(logits, target).backward();

        foreach (var (name, parameter) in model.named_parameters())
        {
            if (name.Contains(".lora_"))
            {
                Assert.NotNull(parameter.grad);
                Assert.True(parameter.grad!.abs().sum().item<float>() > 0, name);
            }
            else Assert.Null(parameter.grad);
        }
    }

    [Fact]
    public void Merged_weights_give_the_logits_of_the_unmerged_adapter()
    {
        using var model = TinyModels.Create();
        var baseLogits = TinyModels.LogitsOf(model, Ids);
        var applied = LoraAdapter.Apply(model, AllSeven with { UseRslora = true });
        RandomizeB(applied);
        var adapted = TinyModels.LogitsOf(model, Ids);
        Assert.True((adapted - baseLogits).abs().max().item<float>() > 1e-2); // the adapter changes the output

        LoraAdapter.Merge(model);
        var merged = TinyModels.LogitsOf(model, Ids);
        AssertClose(adapted, merged);

        LoraAdapter.MergeAndUnload(model);
        Assert.Empty(LoraAdapter.Layers(model));
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora"));
        AssertClose(adapted, TinyModels.LogitsOf(model, Ids));

        // The unloaded model is a plain checkpoint again: it saves and loads through ModelFolder.
        var folder = Path.Combine(_root, "merged");
        ModelFolder.Save(model, folder);
        using var reloaded = ModelFolder.Load(folder);
        reloaded.eval();
        AssertClose(adapted, TinyModels.LogitsOf(reloaded, Ids));
    }

    [Fact]
    public void A_bfloat16_base_merged_into_float32_keeps_the_float32_sum()
    {
        using var model = TinyModels.Create();
        model.to(ScalarType.BFloat16);
        var applied = LoraAdapter.Apply(model, AllSeven);
        RandomizeB(applied);
        var layer = applied.Layers["model.layers.0.self_attn.q_proj"];
        using var expected = layer.BaseWeight.to(ScalarType.Float32) + matmul(layer.B, layer.A) * layer.Scale;

        LoraAdapter.MergeAndUnload(model, ScalarType.Float32);

        var merged = model.state_dict()["model.layers.0.self_attn.q_proj.weight"];
        Assert.Equal(ScalarType.Float32, merged.dtype);
        Assert.True(merged.eq(expected).all().item<bool>(), "merged = bf16 base + scale·B·A in float32, not rounded to bfloat16");
        Assert.False(merged.eq(expected.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().item<bool>()); // what rounding would give
        Assert.Equal(ScalarType.BFloat16, model.state_dict()["model.layers.0.input_layernorm.weight"].dtype); // untouched
    }

    [Fact]
    public void Merge_into_a_tied_model_with_qkv_biases_matches_too()
    {
        var config = TinyModels.Config(tied: true) with { ModelType = "qwen2", AttentionBias = true };
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(5);
        model.eval();
        var applied = LoraAdapter.Apply(model, new LoraOptions { R = 3, Alpha = 6, TargetModules = [LoraOptions.AllLinear], Seed = 2 });
        Assert.Equal(14, applied.Layers.Count); // lm_head is never a target (and here there is none)
        RandomizeB(applied);
        var adapted = TinyModels.LogitsOf(model, Ids);
        LoraAdapter.MergeAndUnload(model);
        AssertClose(adapted, TinyModels.LogitsOf(model, Ids));
    }

    [Fact]
    public void Save_and_load_adapter_round_trip_gives_identical_logits_and_PEFT_files()
    {
        using var model = TinyModels.Create();
        var options = new LoraOptions { R = 4, Alpha = 16, Dropout = 0.05, TargetModules = ["q_proj", "v_proj", "up_proj"], Seed = 9 };
        var applied = LoraAdapter.Apply(model, options);
        RandomizeB(applied);
        var adapted = TinyModels.LogitsOf(model, Ids);
        var folder = Path.Combine(_root, "adapter");
        LoraAdapter.SaveAdapter(model, options, folder, "meta-llama/Meta-Llama-3-8B-Instruct");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, LoraAdapter.ConfigFile)))!;
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal("none", config["bias"]!.GetValue<string>());
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(16, config["lora_alpha"]!.GetValue<double>());
        Assert.Equal(0.05, config["lora_dropout"]!.GetValue<double>());
        Assert.False(config["use_rslora"]!.GetValue<bool>());
        Assert.Equal("meta-llama/Meta-Llama-3-8B-Instruct", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.Equal(["q_proj", "v_proj", "up_proj"], config["target_modules"]!.AsArray().Select(t => t!.GetValue<string>()));

        var header = Safetensors.ReadHeader(Path.Combine(folder, LoraAdapter.WeightsFile));
        Assert.Equal(2 * 3 * 2, header.Tensors.Count);
        var qA = header["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
        var qB = header["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"];
        var upB = header["base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"];
        Assert.NotNull(qA);
        Assert.Equal([4L, 32], qA!.Shape);
        Assert.Equal([32L, 4], qB!.Shape);
        Assert.Equal([48L, 4], upB!.Shape);
        Assert.Equal("F32", qA.Dtype);

        using var fresh = TinyModels.Create();
        var loaded = LoraAdapter.LoadAdapter(fresh, folder);
        Assert.Equal(options.TargetModules, loaded.TargetModules);
        Assert.Equal(applied.TrainableCount, loaded.TrainableCount);
        Assert.True(adapted.eq(TinyModels.LogitsOf(fresh, Ids)).all().item<bool>());
    }

    [Fact]
    public void Loading_an_adapter_of_another_shape_names_the_problem()
    {
        using var model = TinyModels.Create();
        var options = new LoraOptions { R = 2, TargetModules = ["q_proj"] };
        LoraAdapter.Apply(model, options);
        var folder = Path.Combine(_root, "adapter");
        LoraAdapter.SaveAdapter(model, options, folder, null);

        using var deeper = TinyModels.Create(layers: 3);
        var error = Assert.Throws<FineTuneException>(() => LoraAdapter.LoadAdapter(deeper, folder));
        Assert.Contains("missing 'base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight'", error.Message);
    }

    [Fact]
    public void Unknown_target_modules_are_refused_with_the_valid_names()
    {
        using var model = TinyModels.Create();
        var error = Assert.Throws<FineTuneException>(() => LoraAdapter.Apply(model, new LoraOptions { TargetModules = ["q_proj", "qkv_proj"] }));
        Assert.Contains("qkv_proj", error.Message);
        Assert.Contains("all-linear", error.Message);
        Assert.Empty(LoraAdapter.Layers(model));
    }

    private static void RandomizeB(AppliedLora applied)
    {
        using var generator = new torch.Generator(123);
        using var _ = no_grad();
        foreach (var layer in applied.Layers.Values) layer.B.normal_(0, 0.5, generator);
    }

    private static void AssertClose(Tensor expected, Tensor actual)
    {
        var difference = (expected - actual).abs().max().item<float>();
        var scale = Math.Max(1f, expected.abs().max().item<float>());
        Assert.True(difference <= 1e-5 * scale, $"max difference {difference} (logit scale {scale})");
    }
}
