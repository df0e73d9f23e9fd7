namespace FineTune.Core.Data;

/// <summary>
/// A tiny seeded generator (SplitMix64, Steele et al. 2014) whose sequence is fixed by its definition, so a seeded
/// shuffle gives the same order on every platform and .NET version; System.Random's algorithm carries no such promise.
/// </summary>
internal struct SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
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
