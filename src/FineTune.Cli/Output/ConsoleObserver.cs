using FineTune.Core;
using System.Diagnostics;
using System.Globalization;
using FineTune.Core.Stages;

namespace FineTune.Cli.Output;

/// <summary>
/// Prints a run for people: one line per stage (up to date, or why it runs, then what it produced) and, on a
/// terminal, a live progress bar with ETA on stderr; when stderr is redirected, a plain progress line every few
/// seconds.
/// </summary>
internal sealed class ConsoleObserver(TextWriter results, TextWriter log, bool interactive) : IRunObserver
{
    private readonly Lock _gate = new();
    private readonly TextWriter _log = log;
    private readonly bool _interactive = interactive;

    public void Notice(string message)
    {
        lock (_gate) { ClearBar(); _log.WriteLine(message); }
    }

    public void StageUpToDate(StageOutcome outcome)
    {
        var note = outcome.Status == StageStatus.Restored ? " (" + string.Join("; ", outcome.Reasons) + ")" : "";
        lock (_gate) { ClearBar(); results.WriteLine($"{outcome.Stage,-9} up to date{note}"); }
    }

    public void StageStarting(string stage, IReadOnlyList<string> reasons)
    {
        lock (_gate) { ClearBar(); results.WriteLine($"{stage,-9} runs: {string.Join("; ", reasons)}"); }
    }

    public IStageLog LogFor(string stage) => new StageLog(this, stage);

    public void StageFinished(StageOutcome outcome)
    {
        var entry = outcome.Entry!;
        var figures = SummaryFormatter.Headline(outcome.Stage,
            entry.Summary.Concat(entry.Timings).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal));
        lock (_gate)
        {
            ClearBar();
            results.WriteLine($"{outcome.Stage,-9} done in " +
                $"{Durations.Format(entry.DurationSeconds)}{(figures.Length > 0 ? ": " + figures : "")}");
        }
    }

    private bool _barShown;

    private void ClearBar()
    {
        if (!_barShown) return;
        _log.Write("\r\u001b[2K");
        _barShown = false;
    }

    private sealed class StageLog(ConsoleObserver owner, string stage) : IStageLog
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan? _lastPrinted;
        private long _firstDone = -1;
        private TimeSpan _firstSeen;
        private string? _unit;

        public void Info(string message)
        {
            lock (owner._gate) { owner.ClearBar(); owner._log.WriteLine($"  {stage}: {message}"); }
        }

        public void Warning(string message)
        {
            lock (owner._gate) { owner.ClearBar(); owner._log.WriteLine($"  {stage}: warning: {message}"); }
        }

        public void Progress(StageProgress progress)
        {
            var now = _clock.Elapsed;
            // A new kind of work (a download, then training steps) starts its own rate and ETA.
            if (_firstDone < 0 || progress.Unit != _unit)
            {
                (_firstDone, _firstSeen, _unit, _lastPrinted) = (progress.Done, now, progress.Unit, null);
            }
            var finished = progress.Total > 0 && progress.Done >= progress.Total;
            var interval = owner._interactive ? TimeSpan.FromMilliseconds(200) : TimeSpan.FromSeconds(10);
            if (!finished && _lastPrinted is { } last && now - last < interval) return;
            _lastPrinted = now;
            var line = Describe(progress, now);
            lock (owner._gate)
            {
                if (owner._interactive)
                {
                    owner._log.Write("\r\u001b[2K" + line);
                    owner._barShown = true;
                    if (finished) owner.ClearBar();
                }
                else owner._log.WriteLine(line);
            }
        }

        private string Describe(StageProgress progress, TimeSpan now)
        {
            var parts = new List<string> { $"  {stage}" };
            if (progress.Total > 0)
            {
                var share = Math.Clamp((double)progress.Done / progress.Total, 0, 1);
                const int width = 24;
                var filled = (int)Math.Round(share * width);
                parts.Add("[" + new string('#', filled) + new string('.', width - filled) + "]");
                parts.Add($"{Count(progress.Done, progress.Unit)}/{Count(progress.Total, progress.Unit)} " +
                    $"{progress.Unit}s");
                var rateWindow = (now - _firstSeen).TotalSeconds;
                var doneSinceFirst = progress.Done - _firstDone;
                if (doneSinceFirst > 0 && rateWindow > 0.5 && progress.Unit == "byte")
                    parts.Add(Bytes.Format((long)(doneSinceFirst / rateWindow)) + "/s");
                if (doneSinceFirst > 0 && rateWindow > 0.5 && progress.Done < progress.Total)
                    parts.Add("ETA "
                        + Durations.Format((progress.Total - progress.Done) * rateWindow / doneSinceFirst));
            }
            else parts.Add($"{Count(progress.Done, progress.Unit)} {progress.Unit}s");
            if (progress.Detail is { Length: > 0 } detail) parts.Add(detail);
            return string.Join("  ", parts);
        }

        private static string Count(long value, string unit) => unit == "byte" ? Bytes.Format(value)
            : value.ToString("N0", CultureInfo.InvariantCulture);
    }
}

internal static class Bytes
{
    public static string Format(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => (bytes / 1024.0).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
        < 1024L * 1024 * 1024 => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
        _ => (bytes / 1073741824.0).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
    };
}

/// <summary>The few figures of each stage's summary worth a line in the run output.</summary>
internal static class SummaryFormatter
{
    private static readonly Dictionary<string, string[]> Headlines = new()
    {
        ["fetch"] = ["bytes", "sha256"],
        ["format"] = ["records", "train", "validation", "duplicates"],
        ["tokenize"] = ["examples", "tokens", "trained_tokens", "truncated", "dropped"],
        ["train"] = ["steps", "first_loss", "final_loss", "tokens_per_s", "mfu"],
        ["evaluate"] = ["validation_loss", "perplexity"],
        ["export"] = ["parameters", "bytes"],
    };

    public static string Headline(string stage, IReadOnlyDictionary<string, object?> summary)
    {
        if (!Headlines.TryGetValue(stage, out var keys)) return "";
        return string.Join(", ",
            keys.Where(summary.ContainsKey).Select(k => $"{k.Replace('_', ' ')} {Value(k, summary[k])}"));
    }

    private static string Value(string key, object? value) => value switch
    {
        double d when key == "mfu" => d.ToString("P1", CultureInfo.InvariantCulture),
        double d => d.ToString(Math.Abs(d) >= 100 ? "N0" : "0.####", CultureInfo.InvariantCulture),
        long l when key == "bytes" => Bytes.Format(l),
        long l => l.ToString("N0", CultureInfo.InvariantCulture),
        string s when key == "sha256" && s.Length > 12 => s[..12],
        _ => value?.ToString() ?? "",
    };
}
