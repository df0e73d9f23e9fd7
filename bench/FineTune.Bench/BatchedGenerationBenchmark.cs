using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using static TorchSharp.torch;

namespace FineTune.Bench;

/// <summary>
/// The evaluate stage's sample: N prompts answered greedily one at a time (TextGenerator, KV cache) and in batches
/// (BatchedGenerator: left padding, one KV cache, per-row stop), on the huanhuan-cpu model's shape (hidden 256, 4
/// layers, 8/4 heads, intermediate 688, vocabulary 512) with seeded random weights and seeded prompts of 20-80
/// tokens. Checks that both give the same tokens and prints the times and the speed-up.
/// Arguments: [prompts (default 100)] [max new tokens (default 48)] [batch size (default 16)] [threads (default: all)].
/// </summary>
internal sealed class BatchedGenerationBenchmark : IBenchmark
{
    public string Name => "batched-generation";
    public string Description => "100 greedy sample answers: batched (left-padded, KV cache) vs one at a time";

    public int Run(string[] args)
    {
        int Argument(int index, int fallback) =>
            args.Length > index ? int.Parse(args[index], CultureInfo.InvariantCulture) : fallback;
        var count = Argument(0, 100);
        var maxNewTokens = Argument(1, 48);
        var batchSize = Argument(2, 16);
        if (args.Length > 3) set_num_threads(Argument(3, 1));

        var config = new LlamaConfig
        {
            VocabSize = 512, HiddenSize = 256, IntermediateSize = 688, NumHiddenLayers = 4, NumAttentionHeads = 8,
            NumKeyValueHeads = 4, TieWordEmbeddings = true,
        };
        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(42);
        model.eval();
        var random = new Random(7);
        var prompts = Enumerable.Range(0, count)
            .Select(_ => (IReadOnlyList<int>)[.. Enumerable.Range(0, random.Next(20, 81)).Select(_ => random.Next(3, 512))])
            .ToList();
        // Token 2 as the stop token: with random weights some rows stop early, most run to max_new_tokens.
        int[] stops = [2];

        // Warm-up of both paths (JIT, allocator) on a few prompts.
        BatchedGenerator.GenerateGreedy(model, prompts.Take(4).ToList(), 4, stops, 0, batchSize);
        TextGenerator.GenerateIds(model, prompts[0], new GenerationOptions(MaxNewTokens: 4, StopTokenIds: stops));

        var clock = Stopwatch.StartNew();
        var alone = prompts.Select(p => TextGenerator.GenerateIds(model, p,
            new GenerationOptions(MaxNewTokens: maxNewTokens, StopTokenIds: stops))).ToList();
        var aloneSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var batched = BatchedGenerator.GenerateGreedy(model, prompts, maxNewTokens, stops, 0, batchSize);
        var batchedSeconds = clock.Elapsed.TotalSeconds;

        var same = Enumerable.Range(0, count).Count(i => alone[i].SequenceEqual(batched[i]));
        var tokens = alone.Sum(a => a.Count);
        Console.WriteLine($"{count} prompts, {tokens:N0} tokens generated, batch {batchSize}, threads " +
            $"{get_num_threads()}");
        Console.WriteLine($"one at a time: {aloneSeconds:F2} s ({tokens / aloneSeconds:F0} tok/s)");
        Console.WriteLine($"batched:       {batchedSeconds:F2} s ({tokens / batchedSeconds:F0} tok/s)");
        Console.WriteLine($"speed-up {aloneSeconds / batchedSeconds:F2}x; identical answers {same}/{count}");
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            prompts = count, tokens, batch_size = batchSize, alone_s = Math.Round(aloneSeconds, 3),
            batched_s = Math.Round(batchedSeconds, 3), speedup = Math.Round(aloneSeconds / batchedSeconds, 2),
            identical = same,
        }));
        return same == count ? 0 : 1;
    }
}
