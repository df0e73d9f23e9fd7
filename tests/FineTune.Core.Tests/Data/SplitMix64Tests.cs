using FineTune.Core.Data;

namespace FineTune.Core.Tests.Data;

public sealed class SplitMix64Tests
{
    [Fact]
    public void Matches_the_reference_sequence()
    {
        // First outputs of the reference C implementation (Vigna's splitmix64.c) seeded with 0.
        var generator = new SplitMix64(0);
        Assert.Equal(0xE220A8397B1DCDAFUL, generator.Next());
        Assert.Equal(0x6E789E6AA1B965F4UL, generator.Next());
        Assert.Equal(0x06C45D188009454FUL, generator.Next());
    }

    [Fact]
    public void Any_output_is_computed_on_its_own_as_the_sequence_gives_it()
    {
        // The published first outputs of SplitMix64 seeded with 1234567, reached by index in any order.
        Assert.Equal(9817491932198370423UL, SplitMix64.At(1234567, 2));
        Assert.Equal(6457827717110365317UL, SplitMix64.At(1234567, 0));
        Assert.Equal(3203168211198807973UL, SplitMix64.At(1234567, 1));
        var generator = new SplitMix64(0);
        for (var i = 0UL; i < 5; i++) Assert.Equal(generator.Next(), SplitMix64.At(0, i));
    }

    [Fact]
    public void Shuffles_into_a_permutation_fixed_by_the_seed()
    {
        var items = Enumerable.Range(0, 20).ToList();
        var copy = items.ToList();
        new SplitMix64(42).Shuffle(items);
        new SplitMix64(42).Shuffle(copy);

        Assert.Equal(items, copy);
        Assert.Equal(Enumerable.Range(0, 20), items.Order());
        Assert.NotEqual(Enumerable.Range(0, 20), items);
    }
}
