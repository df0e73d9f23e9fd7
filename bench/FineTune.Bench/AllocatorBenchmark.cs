using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using FineTune.Core;

namespace FineTune.Bench;

/// <summary>
/// glibc malloc against jemalloc for the train loop: runs <c>train-loop</c> in child processes, alternately without
/// and with jemalloc preloaded (an allocator is chosen at process start), so machine noise hits both alike, and
/// reports each allocator's median Trainer and bare-loop tokens/s.
/// Arguments: [pairs of runs (default 2)] then train-loop's own arguments (default: 1 float32 1 4 lora).
/// </summary>
internal sealed class AllocatorBenchmark : IBenchmark
{
    public string Name => "allocators";
    public string Description => "train-loop under glibc malloc vs jemalloc (LD_PRELOAD), alternating child processes";

    public int Run(string[] args)
    {
        var pairs = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2;
        string[] loopArguments = args.Length > 1 ? args[1..] : ["1", "float32", "1", "4", "lora"];
        var jemalloc = NativeAllocator.JemallocPaths.FirstOrDefault(File.Exists);
        if (jemalloc is null)
        {
            Console.Error.WriteLine("jemalloc is not installed (Debian/Ubuntu: apt-get install libjemalloc2)");
            return 2;
        }
        var results = new Dictionary<string, List<(double Trainer, double Bare)>>
        {
            ["glibc malloc"] = [], ["jemalloc"] = [],
        };
        for (var pair = 0; pair < pairs; pair++)
        {
            foreach (var (name, preload) in new[] { ("glibc malloc", (string?)null), ("jemalloc", jemalloc) })
            {
                var figures = RunLoop(loopArguments, preload);
                if (figures is null) return 1;
                var (trainer, bare) = (figures["tokens_per_s"]!.GetValue<double>(),
                    figures["bare_tokens_per_s"]!.GetValue<double>());
                Console.WriteLine($"pair {pair + 1}, {name} ({figures["allocator"]}): Trainer {trainer:N1} tok/s, " +
                    $"bare {bare:N1} tok/s, peak RSS {figures["peak_rss_mb"]} MB");
                results[name].Add((trainer, bare));
            }
        }
        var system = results["glibc malloc"];
        var je = results["jemalloc"];
        double Median(IEnumerable<double> values)
        {
            var sorted = values.Order().ToList();
            return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2]
                : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        }
        var (systemTrainer, jeTrainer) = (Median(system.Select(r => r.Trainer)), Median(je.Select(r => r.Trainer)));
        var (systemBare, jeBare) = (Median(system.Select(r => r.Bare)), Median(je.Select(r => r.Bare)));
        Console.WriteLine($"train-loop {string.Join(' ', loopArguments)}: Trainer glibc {systemTrainer:N1} -> " +
            $"jemalloc {jeTrainer:N1} tok/s ({jeTrainer / systemTrainer:N2}x); bare glibc {systemBare:N1} -> " +
            $"jemalloc {jeBare:N1} tok/s ({jeBare / systemBare:N2}x)");
        return 0;
    }

    /// <summary>train-loop in a child process; its JSON line, or null if it failed.</summary>
    private static JsonObject? RunLoop(string[] loopArguments, string? preload)
    {
        var host = Environment.ProcessPath!;
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, UseShellExecute = false };
        // Under `dotnet FineTune.Bench.dll` the host is dotnet, which needs the assembly first.
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
            start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        start.ArgumentList.Add("train-loop");
        foreach (var argument in loopArguments) start.ArgumentList.Add(argument);
        start.Environment.Remove("LD_PRELOAD");
        if (preload is not null) start.Environment["LD_PRELOAD"] = preload;
        using var process = Process.Start(start)!;
        JsonObject? figures = null;
        while (process.StandardOutput.ReadLine() is { } line)
            if (line.StartsWith('{')) figures = JsonNode.Parse(line)!.AsObject();
        process.WaitForExit();
        if (process.ExitCode != 0 || figures is null)
            Console.Error.WriteLine($"train-loop failed (exit {process.ExitCode})");
        return process.ExitCode == 0 ? figures : null;
    }
}
