using System.Globalization;

namespace FineTune.Core;

/// <summary>The one way the tool writes a duration: "4.2s", "38s", "5m07s", "1h03m".</summary>
internal static class Durations
{
    public static string Format(double seconds)
    {
        if (seconds < 60) return seconds.ToString(seconds < 10 ? "0.0" : "0", CultureInfo.InvariantCulture) + "s";
        var span = TimeSpan.FromSeconds(seconds);
        return span.TotalHours >= 1 ? $"{(int)span.TotalHours}h{span.Minutes:00}m"
            : $"{span.Minutes}m{span.Seconds:00}s";
    }
}
