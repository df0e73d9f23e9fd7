using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Tests.Fakes;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Lora;

public sealed class ModulesToSaveTests : IDisposable
{
    private static readonly long[] Ids = [5, 17, 99, 3, 250, 42, 7, 128];
    private static readonly LoraOptions WithHead = new() { R = 4, Alpha = 8, TargetModules = ["q_proj", "v_proj"], Seed = 11, ModulesToSave = ["lm_head"] };
    private readonly string _root = Directory.CreateTempSubdirectory("lora-mts-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Two SGD steps on a next-token loss, so the adapters and the saved module all move.</summary>
    private static void TrainTwoSteps(AppliedLora applied, FineTune.Torch.Models.LlamaForCausalLM model)
    {
        model.train();
        var input = tensor(Ids[..^1], [1, Ids.Length - 1]);
        var loss = F.cross_entropy(model.Logits(model.Hidden(input)).reshape(-1, model.Config.VocabSize), tensor(Ids[1..]));
        loss.backward();
        using (no_grad())
            foreach (var p in applied.TrainableParameters) p.sub_(p.grad! * 0.5);
        // B starts at zero, so one step leaves lora_A's output unused; a second moves everything.
        foreach (var p in applied.TrainableParameters) p.grad!.zero_();
        loss = F.cross_entropy(model.Logits(model.Hidden(input)).reshape(-1, model.Config.VocabSize), tensor(Ids[1..]));
        loss.backward();
        using (no_grad())
            foreach (var p in applied.TrainableParameters) p.sub_(p.grad! * 0.5);
        model.eval();
    }

    [Fact]
    public void The_head_is_trained_saved_under_PEFTs_key_merged_and_loaded_back()
    {
        using var model = TinyModels.Create();
        var headBefore = model.state_dict()["lm_head.weight"].clone();
        var applied = LoraAdapter.Apply(model, WithHead);

        Assert.Equal(WithHead.TrainableParameterCount(model.Config), applied.TrainableCount);
        Assert.Equal(2 * 2 * 2 + 1, applied.TrainableParameters.Count);
        Assert.True(model.state_dict()["lm_head.weight"].requires_grad);
        Assert.False(model.state_dict()["model.embed_tokens.weight"].requires_grad);

        TrainTwoSteps(applied, model);
        Assert.False(headBefore.eq(model.state_dict()["lm_head.weight"]).all().item<bool>());
        var adapted = TinyModels.LogitsOf(model, Ids);

        var folder = Path.Combine(_root, "adapter");
        LoraAdapter.SaveAdapter(model, WithHead, folder, "base");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, LoraAdapter.ConfigFile)))!;
        Assert.Equal(["lm_head"], config["modules_to_save"]!.AsArray().Select(m => m!.GetValue<string>()));
        var header = Safetensors.ReadHeader(Path.Combine(folder, LoraAdapter.WeightsFile));
        Assert.Equal([260L, 32], header["base_model.model.lm_head.weight"]!.Shape);
        Assert.Equal(2 * 2 * 2 + 1, header.Tensors.Count);

        using var fresh = TinyModels.Create();
        LoraAdapter.LoadAdapter(fresh, folder);
        Assert.True(adapted.eq(TinyModels.LogitsOf(fresh, Ids)).all().item<bool>());

        LoraAdapter.MergeAndUnload(model);
        Assert.True(model.state_dict()["lm_head.weight"].eq(fresh.state_dict()["lm_head.weight"]).all().item<bool>());
        Assert.True((TinyModels.LogitsOf(model, Ids) - adapted).abs().max().item<float>() < 1e-3);
    }

    [Fact]
    public void Tied_embeddings_and_unknown_modules_are_refused_clearly()
    {
        using var tied = TinyModels.Create(tied: true);
        var error = Assert.Throws<FineTuneException>(() => LoraAdapter.Apply(tied, WithHead));
        Assert.Equal("FT0553", error.Diagnostics[0].Code);
        Assert.Contains("tied embeddings", error.Message);
        Assert.All(tied.parameters(), p => Assert.True(p.requires_grad)); // refused before anything was frozen

        using var model = TinyModels.Create();
        var unknown = Assert.Throws<FineTuneException>(() => LoraAdapter.Apply(model, WithHead with { ModulesToSave = ["norm"] }));
        Assert.Contains("unknown module(s) norm; use embed_tokens or lm_head", unknown.Message);
    }

    [Fact]
    public void Llama3_8B_with_the_head_saved_counts_the_head_too()
    {
        var config = new FineTune.Torch.Models.LlamaConfig
        {
            VocabSize = 128256, HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 8,
        };
        var options = new LoraOptions { R = 8, TargetModules = [LoraOptions.AllLinear], ModulesToSave = ["lm_head"] };
        Assert.Equal(20_971_520 + 128_256L * 4096, options.TrainableParameterCount(config));
    }
}
