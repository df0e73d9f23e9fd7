using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using FineTune.Core.Caching;
using FineTune.Core.Tokenization;
using FineTune.Torch.Formats;
using FineTune.Torch.Formats.Gguf;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Bench;

/// <summary>
/// Seconds and peak RSS of the export stage's two heavy writers on a Qwen2.5-0.5B-shaped model with random weights
/// (494M parameters, float32 source as the train stage writes it): sharded safetensors (bfloat16, 500MB shards)
/// and GGUF Q8_0. Each export runs in a child process of this executable, so VmHWM (peak RSS) is its own; the child
/// also reports its RSS before the export (runtime + libtorch), the baseline the export adds to. As in a pipeline, the
/// source is on the disk before the export starts (the store flushes a stage's output when it commits it), and the
/// export counts until its files are on the disk too (the store's flush at commit): "written" is the writer alone,
/// "on disk" includes that flush, the figure to hold against the disk's own speed. <c>--formats hf,gguf,hf</c> runs
/// them in that order: the first child of a run pays for memory the VM has not handed out before, so repeat one.
/// </summary>
internal sealed class ExportBenchmark : IBenchmark
{
    public string Name => "export";
    public string Description => "seconds and peak RSS of hf (sharded) and GGUF Q8_0 export of a Qwen2.5-0.5B shape";

    private sealed record Measurement(string Format, double Seconds, double FlushedSeconds, double BaselineMb,
        double PeakMb, long Bytes);

    public int Run(string[] args)
    {
        var child = Array.IndexOf(args, "--child");
        if (child >= 0) return RunChild(args[child + 1], args[child + 2]);
        var layers = Array.IndexOf(args, "--layers") is var i and >= 0
            ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : 24;

        var root = Directory.CreateTempSubdirectory("ft-bench-export-").FullName;
        try
        {
            var config = BenchModels.Qwen25HalfB(151936, layers);
            long parameters;
            using (var model = new LlamaForCausalLM(config))
            {
                model.InitializeWeights(1);
                parameters = model.parameters().Sum(p => p.numel());
                ModelFolder.Save(model, Path.Combine(root, "model"));
            }
            Durable.FlushTree(Path.Combine(root, "model"));
            ChatTokenizer.LoadGpt2("chatml").WriteFiles(Path.Combine(root, "tokenizer"), 512);
            var sourceMb = new FileInfo(Path.Combine(root, "model", "model.safetensors")).Length / 1e6;
            Console.WriteLine($"export: Qwen2.5-0.5B shape, {layers} layers, {parameters:N0} parameters, float32 source " +
                $"{sourceMb:N0} MB; load average {File.ReadAllText("/proc/loadavg").Trim()}");
            var formats = Array.IndexOf(args, "--formats") is var f and >= 0 ? args[f + 1].Split(',') : ["hf", "gguf"];
            var results = formats.Select(format => BenchModels.RunChild<Measurement>(format, "export", "--child", format, root)).ToList();
            if (results.Any(r => r is null)) return 1;
            foreach (var m in results)
                Console.WriteLine($"  {m!.Format,-4}: written {m.Seconds,4:F1} s ({m.Bytes / 1e6 / m.Seconds:N0} MB/s), on disk " +
                    $"{m.FlushedSeconds,4:F1} s ({m.Bytes / 1e6 / m.FlushedSeconds:N0} MB/s), {m.Bytes / 1e6:N0} MB; peak RSS " +
                    $"{m.PeakMb,5:N0} MB (before the export {m.BaselineMb:N0} MB)");
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                benchmark = Name, layers, parameters, source_mb = Math.Round(sourceMb),
                results = results.Select(r => new
                {
                    format = r!.Format, seconds = Math.Round(r.Seconds, 2),
                    on_disk_seconds = Math.Round(r.FlushedSeconds, 2), baseline_mb = Math.Round(r.BaselineMb),
                    peak_mb = Math.Round(r.PeakMb), bytes = r.Bytes,
                }),
            }));
            return 0;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static int RunChild(string format, string root)
    {
        using (var warm = ones(4)) _ = warm.sum().item<float>(); // libtorch loaded before the baseline is read
        var baseline = BenchModels.StatusMegabytes("VmRSS");
        var model = Path.Combine(root, "model");
        var output = Directory.CreateDirectory(Path.Combine(root, "out-" + format)).FullName;
        var stopwatch = Stopwatch.StartNew();
        if (format == "hf")
            SafetensorsShards.Write(ModelFolder.WeightFiles(model), output, ScalarType.BFloat16, 500_000_000);
        else
            GgufModelExport.Write(model, Path.Combine(root, "tokenizer"), Path.Combine(output, "model-Q8_0.gguf"),
                GgmlType.Q8_0, "bench", [50258]);
        var seconds = stopwatch.Elapsed.TotalSeconds;
        Durable.FlushTree(output);
        var flushed = stopwatch.Elapsed.TotalSeconds;
        var bytes = Directory.GetFiles(output).Sum(f => new FileInfo(f).Length);
        Console.WriteLine(JsonSerializer.Serialize(new Measurement(format, seconds, flushed, baseline,
            BenchModels.StatusMegabytes("VmHWM"), bytes)));
        Directory.Delete(output, recursive: true);
        return 0;
    }
}
