using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using FineTune.Torch.Models;
using FineTune.Torch.Tests.Fakes;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Models;

public sealed class ModelFolderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ft-modelfolder-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly long[] Prompt = [258, 72, 105, 256, 259, 200, 3];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Saved_folder_loads_back_with_identical_logits(bool tied)
    {
        using var model = TinyModels.Create(tied);
        ModelFolder.Save(model, _dir);

        using var loaded = ModelFolder.Load(_dir);
        Assert.Equal(model.Config.ToJson("float32"), loaded.Config.ToJson("float32"));
        var expected = TinyModels.LogitsOf(model, Prompt);
        var actual = TinyModels.LogitsOf(loaded, Prompt);
        Assert.True(expected.eq(actual).all().item<bool>(), "logits differ after save and load");

        var header = Safetensors.ReadHeader(Path.Combine(_dir, ModelFolder.WeightsFile));
        Assert.Equal(tied, header["lm_head.weight"] is null);
        Assert.NotNull(header["model.layers.1.mlp.down_proj.weight"]);
        Assert.All(header.Tensors, t => Assert.Equal("F32", t.Dtype));
        Assert.Contains("\"tie_word_embeddings\": " + (tied ? "true" : "false"), File.ReadAllText(Path.Combine(_dir, ModelFolder.ConfigFile)));
    }

    [Fact]
    public void Bfloat16_folder_holds_bf16_weights_that_load_as_rounded_values()
    {
        using var model = TinyModels.Create();
        ModelFolder.Save(model, _dir, "bfloat16");

        var header = Safetensors.ReadHeader(Path.Combine(_dir, ModelFolder.WeightsFile));
        Assert.All(header.Tensors, t => Assert.Equal("BF16", t.Dtype));
        Assert.Contains("\"torch_dtype\": \"bfloat16\"", File.ReadAllText(Path.Combine(_dir, ModelFolder.ConfigFile)));

        using var loaded = ModelFolder.Load(_dir);
        var original = model.state_dict()["model.embed_tokens.weight"];
        var roundTripped = loaded.state_dict()["model.embed_tokens.weight"];
        Assert.Equal(ScalarType.Float32, roundTripped.dtype);
        Assert.True(original.to(ScalarType.BFloat16).to(ScalarType.Float32).eq(roundTripped).all().item<bool>());
    }

    [Fact]
    public void Loading_weights_of_another_shape_lists_every_problem()
    {
        using (var small = TinyModels.Create(layers: 1)) ModelFolder.Save(small, _dir);
        // Claim two layers and a wider MLP than the weights have.
        var config = File.ReadAllText(Path.Combine(_dir, ModelFolder.ConfigFile))
            .Replace("\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2")
            .Replace("\"intermediate_size\": 48", "\"intermediate_size\": 64");
        File.WriteAllText(Path.Combine(_dir, ModelFolder.ConfigFile), config);

        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        var message = Assert.Single(error.Diagnostics).Message;
        Assert.Equal("FT0522", error.Diagnostics[0].Code);
        Assert.Contains("missing 'model.layers.1.self_attn.q_proj.weight'", message);
        Assert.Contains("'model.layers.0.mlp.up_proj.weight' has shape [48, 32] in the file but the model needs [64, 32]", message);
    }

    [Fact]
    public void Unexpected_weights_are_rejected()
    {
        using var model = TinyModels.Create();
        ModelFolder.Save(model, _dir);
        var weights = Safetensors.Load(Path.Combine(_dir, ModelFolder.WeightsFile));
        weights["model.layers.0.self_attn.q_proj.lora_A"] = zeros(4, 32);
        Safetensors.Save(Path.Combine(_dir, ModelFolder.WeightsFile), weights);

        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Contains("unexpected 'model.layers.0.self_attn.q_proj.lora_A'", error.Message);
    }

    [Fact]
    public void A_folder_without_config_is_a_clear_error()
    {
        var error = Assert.Throws<FineTuneException>(() => ModelFolder.Load(_dir));
        Assert.Equal("FT0520", error.Diagnostics[0].Code);
        Assert.Contains("no config.json", error.Message);
    }
}
