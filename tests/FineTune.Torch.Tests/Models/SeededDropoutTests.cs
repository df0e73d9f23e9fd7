using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Models;

public sealed class SeededDropoutTests
{
    [Fact]
    public void Training_zeroes_about_p_and_scales_the_rest_like_nn_Dropout_and_eval_is_the_identity()
    {
        using var x = ones(200, 100);
        SeededDropout.StartStream(seed: 1, stream: 0);
        using var dropped = SeededDropout.Apply(x, 0.25, training: true);
        Assert.InRange(dropped.eq(0).to(ScalarType.Float32).mean().item<float>(), 0.23f, 0.27f);
        Assert.True(dropped.masked_select(dropped.ne(0)).eq(1 / 0.75f).all().item<bool>());
        Assert.True(SeededDropout.Apply(x, 0.25, training: false).eq(x).all().item<bool>());
    }

    [Fact]
    public void A_mask_depends_on_the_stream_and_the_draw_index_only()
    {
        using var x = ones(50, 40);
        SeededDropout.StartStream(seed: 1, stream: 0);
        var start = SeededDropout.Current;
        using var first = SeededDropout.Apply(x, 0.5, training: true);
        using var second = SeededDropout.Apply(x, 0.5, training: true);
        Assert.False(first.eq(second).all().item<bool>());

        SeededDropout.MoveTo(start);
        Assert.True(SeededDropout.Apply(x, 0.5, training: true).eq(first).all().item<bool>());
        SeededDropout.StartStream(seed: 1, stream: 1);
        Assert.False(SeededDropout.Apply(x, 0.5, training: true).eq(first).all().item<bool>());
        SeededDropout.StartStream(seed: 2, stream: 0);
        Assert.False(SeededDropout.Apply(x, 0.5, training: true).eq(first).all().item<bool>());
    }
}
