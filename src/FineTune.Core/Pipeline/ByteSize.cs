using System.Globalization;

namespace FineTune.Core.Pipeline;

/// <summary>
/// Sizes as transformers' <c>max_shard_size</c> writes them: "5GB" is 5 * 10^9 bytes, "5GiB" 5 * 2^30, a bare number
/// is bytes.
/// </summary>
internal static class ByteSize
{
    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("KIB", 1L << 10), ("MIB", 1L << 20), ("GIB", 1L << 30), ("TIB", 1L << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1),
    ];

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var upper = text.Trim().ToUpperInvariant();
        var (suffix, factor) = Units.FirstOrDefault(u => upper.EndsWith(u.Suffix, StringComparison.Ordinal));
        var number = suffix is null ? upper : upper[..^suffix.Length].TrimEnd();
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
            || value < 0 || double.IsInfinity(value))
            return false;
        var result = value * (suffix is null ? 1 : factor);
        if (result > long.MaxValue) return false;
        bytes = (long)result;
        return true;
    }
}
