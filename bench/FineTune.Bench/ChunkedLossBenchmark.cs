using System.Diagnostics;
using System.Globalization;
using FineTune.Torch.Models;
using FineTune.Torch.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Bench;

/// <summary>
/// Peak memory and time of the head's loss over a 4 x 384 batch of labelled positions (forward and backward into the
/// hidden states, frozen head as under LoRA), full logits vs <see cref="ChunkedCrossEntropy"/>, on a Qwen2.5-0.5B-
/// shaped head (hidden 896, tied). Arguments: full|chunked [vocab (default 151936)]. Run each mode in its own process:
/// peak RSS is a per-process high-water mark (reset through /proc/self/clear_refs before the pass).
/// </summary>
internal sealed class ChunkedLossBenchmark : IBenchmark
{
    public string Name => "chunked-loss";
    public string Description => "peak RSS of the head loss over 4 x 384 positions: full logits vs chunked";

    public int Run(string[] args)
    {
        var chunked = args.Length > 0 && args[0] == "chunked";
        var vocab = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 151_936;
        using var model = new LlamaForCausalLM(new LlamaConfig
        {
            ModelType = "qwen2", VocabSize = vocab, HiddenSize = 896, IntermediateSize = 64, NumHiddenLayers = 1,
            NumAttentionHeads = 14, NumKeyValueHeads = 2, TieWordEmbeddings = true,
        });
        foreach (var p in model.parameters()) p.requires_grad_(false);
        var hidden = randn([4 * 384, 896]).requires_grad_(true);
        var targets = randint(0, vocab, [4 * 384]);
        File.WriteAllText("/proc/self/clear_refs", "5");
        var before = Kilobytes("VmRSS");
        var clock = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            var loss = chunked ? ChunkedCrossEntropy.Sum(model, hidden, targets)
                : F.cross_entropy(model.Logits(hidden), targets, reduction: nn.Reduction.Sum);
            loss.backward();
        }
        var seconds = clock.Elapsed.TotalSeconds;
        var peak = Kilobytes("VmHWM");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{(chunked ? "chunked" : "full")} vocab {vocab:N0}: peak RSS +{(peak - before) / 1024.0:N0} MiB over " +
            $"the pass, {seconds:F2} s"));
        return 0;
    }

    private static long Kilobytes(string field) => long.Parse(File.ReadLines("/proc/self/status")
        .First(l => l.StartsWith(field + ":", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
        CultureInfo.InvariantCulture);
}
