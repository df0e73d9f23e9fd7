using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Training;

namespace FineTune.Torch.Tests.Training;

/// <summary>FLOPs per token: 6N trained, 4N frozen (4N + 6N_lora under LoRA), plus the recompute of checkpointing.</summary>
public sealed class FlopCounterTests
{
    // The tiny test model: hidden 32, 2 layers, 4 heads of 8, 2 kv heads (k and v are 16 wide), intermediate 48,
    // vocab 260, untied. Per layer q 32*32 + k 32*16 + v 32*16 + o 32*32 + gate, up, down 3 * 32*48 + two norms of 32
    // = 7,744; two layers and the final norm: N = 15,520. LoRA r 2 on all seven: r * (in + out) = 128 + 96 + 96 + 128
    // + 3 * 160 = 928 per layer, N_lora = 1,856.
    private const double N = 15_520, NLora = 1_856, Attention = 2 * 32 * 10, Head = 32 * 260;

    [Fact]
    public void Full_fine_tuning_counts_6n_and_the_trained_head()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 2));
        var flops = FlopCounter.Of(model).TrainingFlops(tokens: 10, paddedLength: 10, trainedPositions: 4);
        Assert.Equal(10 * (6 * N + 6 * Attention) + 4 * 6 * Head, flops);
    }

    [Fact]
    public void Lora_counts_4n_for_the_frozen_base_6n_for_adapters_and_the_recompute_under_checkpointing()
    {
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 2));
        LoraAdapter.Apply(model, new LoraOptions { R = 2, TargetModules = [LoraOptions.AllLinear] });
        var flops = FlopCounter.Of(model).TrainingFlops(tokens: 10, paddedLength: 10, trainedPositions: 4);
        Assert.Equal(10 * (4 * N + 6 * NLora + 6 * Attention) + 4 * 4 * Head, flops);
        model.GradientCheckpointing = true;
        var recomputed = FlopCounter.Of(model).TrainingFlops(tokens: 10, paddedLength: 10, trainedPositions: 4);
        Assert.Equal(flops + 10 * (2 * (N + NLora) + 2 * Attention), recomputed);
    }
}
