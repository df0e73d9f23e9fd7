using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Torch.Distributed;
using static TorchSharp.torch;

namespace FineTune.Bench;

/// <summary>
/// The gradient all-reduce of data-parallel training, alone: the time to sum a LoRA-sized and a full-model-sized
/// float32 gradient over the ranks of an mpirun launch, through the same backend and buckets the trainer uses.
/// Run under a launcher, e.g.
///   mpirun --allow-run-as-root -np 2 dotnet bench/FineTune.Bench/bin/Release/net10.0/FineTune.Bench.dll allreduce
/// Sizes: Qwen2.5-0.5B's LoRA r8 on its 7 projections of 24 layers (4,399,104 values: per layer
/// 8 x (1792 + 1024 + 1024 + 1792 + 5760 + 5760 + 5760)) and its full 494,032,768 parameters. Options: --repeat N (5),
/// --full-values N (494032768; smaller on a machine with little memory).
/// </summary>
internal sealed class AllReduceBenchmark : IBenchmark
{
    private const long LoraValues = 4_399_104;

    public string Name => "allreduce";
    public string Description => "gradient all-reduce time for LoRA- and full-model-sized buffers (under mpirun)";

    public int Run(string[] args)
    {
        var repeat = Option(args, "--repeat", 5);
        var fullValues = Option(args, "--full-values", 494_032_768L);
        var launcher = LauncherEnvironment.FromProcess();
        if (!launcher.IsMultiProcess)
        {
            Console.Error.WriteLine("run under a launcher: mpirun -np 2 dotnet .../FineTune.Bench.dll allreduce");
            return 2;
        }
        using var parallel = DataParallel.Start("auto", launcher, CPU)!;
        var rows = new List<object>();
        foreach (var (label, values) in new[] { ("lora", LoraValues), ("full", fullValues) })
        {
            using var gradient = ones(values, ScalarType.Float32);
            var parameters = new List<TorchSharp.Modules.Parameter>
            {
                new(zeros(values, ScalarType.Float32), requires_grad: true) { grad = gradient },
            };
            var figures = new double[2];
            parallel.SumGradients(parameters, figures); // warm-up: buffers and connections
            var seconds = new List<double>();
            for (var i = 0; i < repeat; i++)
            {
                parallel.Barrier("the benchmark");
                var clock = Stopwatch.StartNew();
                parallel.SumGradients(parameters, figures);
                seconds.Add(clock.Elapsed.TotalSeconds);
            }
            var median = seconds.Order().ElementAt(seconds.Count / 2);
            var megabytes = values * 4 / 1e6;
            if (launcher.Rank == 0)
                Console.WriteLine($"  {label,-5} {values,13:N0} values ({megabytes,8:N1} MB): median {median * 1000,9:N1} ms " +
                    $"over {repeat} ({megabytes / 1000 / median:N2} GB/s of buffer), {launcher.WorldSize} ranks");
            rows.Add(new { buffer = label, values, median_ms = Math.Round(median * 1000, 1) });
            foreach (var p in parameters) p.Dispose();
        }
        parallel.Finish();
        if (launcher.Rank == 0)
            Console.WriteLine(JsonSerializer.Serialize(new { benchmark = Name, ranks = launcher.WorldSize, rows }));
        return 0;
    }

    private static long Option(string[] args, string name, long fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? long.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
    }

    private static int Option(string[] args, string name, int fallback) => (int)Option(args, name, (long)fallback);
}
