namespace FineTune.Core.Data;

/// <summary>
/// A tiny seeded generator (SplitMix64, Steele et al. 2014) whose sequence is fixed by its definition, so a seeded
/// shuffle gives the same order on every platform and .NET version; System.Random's algorithm carries no such promise.
/// </summary>
internal struct SplitMix64(ulong seed)
{
    /// <summary>The state's increment per output (the golden ratio in 64 bits).</summary>
    public const ulong Gamma = 0x9E3779B97F4A7C15UL;

    /// <summary>The finaliser's two multipliers, for vectorised copies of <see cref="Mix"/>.</summary>
    public const ulong Multiplier1 = 0xBF58476D1CE4E5B9UL, Multiplier2 = 0x94D049BB133111EBUL;

    private ulong _state = seed;

    public ulong Next() => Mix(_state += Gamma);

    /// <summary>
    /// Output <paramref name="index"/> (from 0) of the generator seeded with <paramref name="seed"/>, without the ones
    /// before it: the state is a counter, so any output can be computed on its own (in parallel, in any order).
    /// </summary>
    public static ulong At(ulong seed, ulong index) => Mix(seed + (index + 1) * Gamma);

    /// <summary>The finaliser: nearby inputs give unrelated outputs.</summary>
    public static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * Multiplier1;
        z = (z ^ (z >> 27)) * Multiplier2;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, bound): rejects the few values that would make a plain modulo favour small
    /// numbers.</summary>
    public ulong NextBelow(ulong bound)
    {
        if (bound == 0) throw new ArgumentOutOfRangeException(nameof(bound));
        var threshold = (0UL - bound) % bound;
        while (true)
        {
            var value = Next();
            if (value >= threshold) return value % bound;
        }
    }

    /// <summary>Fisher–Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (var i = items.Count - 1; i > 0; i--)
        {
            var j = (int)NextBelow((ulong)i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
