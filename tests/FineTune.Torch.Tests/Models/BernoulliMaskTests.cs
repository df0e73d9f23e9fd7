using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Models;

public sealed class BernoulliMaskTests
{
    // SplitMix64 as its reference implementation (Steele, Lea and Flood; Vigna's splitmix64.c) writes it.
    private static ulong ReferenceNext(ref ulong state)
    {
        var z = state += 0x9E3779B97F4A7C15;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    [Fact]
    public void Each_element_is_its_words_half_below_p_times_2_to_the_32_across_vectors_work_items_and_the_tail()
    {
        // Odd and larger than one parallel work item (65,536): the vectorised rounds, the scalar tail and the split.
        const int count = 200_001;
        const ulong seed = 0xDEADBEEF;
        using var mask = BernoulliMask.Draw([count], seed, 0.3);
        var actual = mask.data<bool>().ToArray();
        var threshold = (uint)Math.Round(0.3 * 4294967296.0);
        var state = seed;
        for (var e = 0; e < count; e += 2)
        {
            var word = ReferenceNext(ref state);
            Assert.Equal((uint)word < threshold, actual[e]);
            if (e + 1 < count) Assert.Equal((uint)(word >> 32) < threshold, actual[e + 1]);
        }
    }

    [Fact]
    public void Drops_about_p_of_the_elements_independently_of_their_neighbours()
    {
        const int count = 1 << 20;
        const double p = 0.1;
        using var mask = BernoulliMask.Draw([1024, 1024], 42, p).to(ScalarType.Float32).view(-1);
        var sigma = Math.Sqrt(p * (1 - p) / count);
        Assert.InRange(mask.mean().item<float>(), p - 5 * sigma, p + 5 * sigma);
        // Both halves of a word, and neighbouring words, drop together with probability p^2.
        var pairs = count / 2;
        var pairSigma = Math.Sqrt(p * p * (1 - p * p) / pairs);
        var halves = mask.view(-1, 2);
        Assert.InRange((halves[.., 0] * halves[.., 1]).mean().item<float>(), p * p - 5 * pairSigma, p * p + 5 * pairSigma);
        var neighbours = mask.view(-1, 4);
        Assert.InRange((neighbours[.., 1] * neighbours[.., 2]).mean().item<float>(), p * p - 5 * pairSigma * Math.Sqrt(2),
            p * p + 5 * pairSigma * Math.Sqrt(2));
    }

    [Fact]
    public void Kept_and_AddKept_apply_the_mask_Draw_gives_for_the_same_seed_without_storing_it()
    {
        // Odd and over one work item, as above; the values include negatives and -0, whose dropped places become +0.
        const int count = 200_001;
        const ulong seed = 77;
        const double p = 0.25;
        var x = randn([count], generator: new Generator(3));
        x[5] = tensor(-0f);
        using var mask = BernoulliMask.Draw([count], seed, p);
        var expected = x.masked_fill(mask, 0);

        var kept = BernoulliMask.Kept(x, seed, p);
        Assert.True(kept.eq(expected).all().item<bool>());
        Assert.Equal(expected.signbit().sum().item<long>(), kept.signbit().sum().item<long>());

        var target = randn([count], generator: new Generator(4));
        var sum = target + expected;
        BernoulliMask.AddKept(target, x, seed, p);
        Assert.True(target.eq(sum).all().item<bool>());
        Assert.InRange(mask.to(ScalarType.Float32).mean().item<float>(), 0.24f, 0.26f); // the mask did drop: the test bites
    }
}
