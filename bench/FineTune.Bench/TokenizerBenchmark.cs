using System.Diagnostics;
using System.Text.Json;
using FineTune.Core.Tokenization;
using FineTune.Tokenizers;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace FineTune.Bench;

/// <summary>
/// HfTokenizer against Hugging Face's Rust tokenizers (Tokenizers.DotNet) on the ChatML text of every huanhuan
/// record with the Qwen3 tokenizer: tokens per second of each, and whether the ids are identical on every record.
/// Args: [huanhuan.json] [tokenizer.json] [repetitions].
/// </summary>
internal sealed class TokenizerBenchmark : IBenchmark
{
    public string Name => "tokenizer";
    public string Description => "HfTokenizer vs Hugging Face tokenizers (Rust): tokens/s and exactness on huanhuan ChatML, Qwen3";

    public int Run(string[] args)
    {
        var root = RepositoryRoot();
        var dataPath = args.Length > 0 ? args[0] : Path.GetFullPath(Path.Combine(root, "..", "shared", "data", "huanhuan.json"));
        var tokenizerPath = args.Length > 1 ? args[1] : Path.Combine(root, "tests", "FineTune.Core.Tests", "assets", "qwen3", "tokenizer.json");
        var repetitions = args.Length > 2 ? int.Parse(args[2]) : 5;

        if (!File.Exists(dataPath))
        {
            Console.Error.WriteLine($"no data at {dataPath}; pass the path of huanhuan.json as the first argument");
            return 2;
        }
        using var document = JsonDocument.Parse(File.ReadAllText(dataPath));
        var texts = document.RootElement.EnumerateArray().Select(record =>
            $"<|im_start|>user\n{record.GetProperty("instruction").GetString()}{record.GetProperty("input").GetString()}<|im_end|>\n" +
            $"<|im_start|>assistant\n{record.GetProperty("output").GetString()}<|im_end|>\n").ToArray();

        var loadClock = Stopwatch.StartNew();
        var ours = HfTokenizer.Load(tokenizerPath);
        var ourLoad = loadClock.Elapsed.TotalSeconds;
        loadClock.Restart();
        using var rust = new RustTokenizer(tokenizerPath);
        var rustLoad = loadClock.Elapsed.TotalSeconds;

        // First pass: cold caches, and the exactness check.
        var mismatches = 0;
        var firstMismatch = -1;
        var ourIds = new int[texts.Length][];
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < texts.Length; i++) ourIds[i] = ours.Encode(texts[i]).Ids;
        var ourCold = clock.Elapsed.TotalSeconds;
        var rustIds = new uint[texts.Length][];
        clock.Restart();
        for (var i = 0; i < texts.Length; i++) rustIds[i] = rust.Encode(texts[i]);
        var rustCold = clock.Elapsed.TotalSeconds;
        for (var i = 0; i < texts.Length; i++)
            if (!ourIds[i].SequenceEqual(rustIds[i].Select(id => (int)id)))
            {
                mismatches++;
                if (firstMismatch < 0) firstMismatch = i;
            }
        long tokens = ourIds.Sum(ids => ids.Length);

        // Warm passes, interleaved so both see the same machine load.
        double ourWarm = double.MaxValue, rustWarm = double.MaxValue;
        for (var r = 0; r < repetitions; r++)
        {
            clock.Restart();
            foreach (var text in texts) ours.Encode(text);
            ourWarm = Math.Min(ourWarm, clock.Elapsed.TotalSeconds);
            clock.Restart();
            foreach (var text in texts) rust.Encode(text);
            rustWarm = Math.Min(rustWarm, clock.Elapsed.TotalSeconds);
        }

        // Fresh instances of both after all that: empty word caches, but our code is compiled and tiered up,
        // which is what every later tokenizer load in a long-running process sees.
        var fresh = HfTokenizer.Load(tokenizerPath);
        clock.Restart();
        foreach (var text in texts) fresh.Encode(text);
        var ourFresh = clock.Elapsed.TotalSeconds;
        using var rustFresh = new RustTokenizer(tokenizerPath);
        clock.Restart();
        foreach (var text in texts) rustFresh.Encode(text);
        var rustFreshSeconds = clock.Elapsed.TotalSeconds;

        Console.WriteLine($"records {texts.Length}, tokens {tokens:N0}, tokenizer {tokenizerPath}");
        Console.WriteLine($"load            ours {ourLoad:F2} s   rust {rustLoad:F2} s");
        Console.WriteLine($"first pass (ours includes JIT) ours {tokens / ourCold:N0} tok/s   rust {tokens / rustCold:N0} tok/s   ratio {rustCold / ourCold:F2}x");
        Console.WriteLine($"fresh instances ours {tokens / ourFresh:N0} tok/s   rust {tokens / rustFreshSeconds:N0} tok/s   ratio {rustFreshSeconds / ourFresh:F2}x (empty caches, warmed-up runtime)");
        Console.WriteLine($"warm (best of {repetitions}) ours {tokens / ourWarm:N0} tok/s   rust {tokens / rustWarm:N0} tok/s   ratio {rustWarm / ourWarm:F2}x");
        Console.WriteLine(mismatches == 0 ? $"ids identical on all {texts.Length} records" : $"ids DIFFER on {mismatches} records (first: record {firstMismatch})");
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            benchmark = Name, records = texts.Length, tokens,
            ours_cold_tokens_per_s = tokens / ourCold, rust_cold_tokens_per_s = tokens / rustCold,
            ours_warm_tokens_per_s = tokens / ourWarm, ours_fresh_tokens_per_s = tokens / ourFresh, rust_fresh_tokens_per_s = tokens / rustFreshSeconds, rust_warm_tokens_per_s = tokens / rustWarm,
            warm_ratio = rustWarm / ourWarm, identical = mismatches == 0, mismatches,
        }));
        return mismatches == 0 ? 0 : 1;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "FineTune.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
