using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json.Nodes;
using FineTune.Core;

namespace FineTune.Bench;

/// <summary>
/// The allocators for the train loop: runs <c>train-loop</c> in child processes (an allocator is chosen at process
/// start) on glibc malloc and jemalloc, each with its defaults and as the tool tunes it (<see cref="NativeAllocator"/>),
/// in turn, so machine noise hits all alike, and reports each one's median Trainer and bare-loop tokens/s.
/// Arguments: [rounds (default 2)] then train-loop's own arguments (default: 1 float32 1 4 lora).
/// </summary>
internal sealed class AllocatorBenchmark : IBenchmark
{
    public string Name => "allocators";
    public string Description => "train-loop on glibc malloc and jemalloc, defaults vs the tool's tuning, child processes in turn";

    public int Run(string[] args)
    {
        var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2;
        string[] loopArguments = args.Length > 1 ? args[1..] : ["1", "float32", "1", "4", "lora"];
        var jemalloc = NativeAllocator.JemallocPaths.FirstOrDefault(File.Exists);
        static string? None(string key) => null;
        var configurations = new List<(string Name, IReadOnlyDictionary<string, string> Environment)>
        {
            ("glibc malloc", new Dictionary<string, string>()),
            ("glibc malloc, tuned", NativeAllocator.EnvironmentFor("glibc", None, isLinux: true, File.Exists)!),
        };
        if (jemalloc is null) Console.Error.WriteLine("jemalloc is not installed (Debian/Ubuntu: apt-get install libjemalloc2): glibc only");
        else
        {
            configurations.Add(("jemalloc", new Dictionary<string, string> { ["LD_PRELOAD"] = jemalloc }));
            configurations.Add(("jemalloc, tuned", NativeAllocator.EnvironmentFor("jemalloc", None, isLinux: true, File.Exists)!));
        }
        var results = configurations.ToDictionary(c => c.Name, _ => new List<(double Trainer, double Bare, double Rss)>());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var (name, environment) in configurations)
            {
                var figures = RunLoop(loopArguments, environment);
                if (figures is null) return 1;
                var (trainer, bare, rss) = (figures["tokens_per_s"]!.GetValue<double>(),
                    figures["bare_tokens_per_s"]!.GetValue<double>(), figures["peak_rss_mb"]!.GetValue<double>());
                Console.WriteLine($"round {round + 1}, {name} ({figures["allocator"]}): Trainer {trainer:N1} tok/s, " +
                    $"bare {bare:N1} tok/s, peak RSS {rss:N0} MB");
                results[name].Add((trainer, bare, rss));
            }
        }
        var baseline = BenchModels.Median(results["glibc malloc"].Select(r => r.Bare));
        Console.WriteLine($"train-loop {string.Join(' ', loopArguments)}, medians of {rounds}:");
        foreach (var (name, runs) in results)
        {
            var (trainer, bare) = (BenchModels.Median(runs.Select(r => r.Trainer)), BenchModels.Median(runs.Select(r => r.Bare)));
            Console.WriteLine($"  {name,-20} Trainer {trainer,9:N1} tok/s   bare {bare,9:N1} tok/s   " +
                $"Trainer / bare on glibc's defaults {trainer / baseline:N2}x   peak RSS {BenchModels.Median(runs.Select(r => r.Rss)):N0} MB");
        }
        return 0;
    }

    /// <summary>train-loop in a child process; its JSON line, or null if it failed.</summary>
    private static JsonObject? RunLoop(string[] loopArguments, IReadOnlyDictionary<string, string> environment)
    {
        var host = Environment.ProcessPath!;
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, UseShellExecute = false };
        // Under `dotnet FineTune.Bench.dll` the host is dotnet, which needs the assembly first.
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
            start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        start.ArgumentList.Add("train-loop");
        foreach (var argument in loopArguments) start.ArgumentList.Add(argument);
        foreach (var variable in new[] { "LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES" }) start.Environment.Remove(variable);
        foreach (var (key, value) in environment) start.Environment[key] = value;
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
