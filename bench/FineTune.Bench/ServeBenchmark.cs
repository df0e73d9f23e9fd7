using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;

namespace FineTune.Bench;

/// <summary>
/// Time to first token and tokens/s of a running <c>dotnet finetune serve</c> (streamed chat completions, one
/// client, then N concurrent clients) against the chat command's generation in-process on the same model folder
/// and prompt (greedy, fixed max tokens).
/// </summary>
internal sealed class ServeBenchmark : IBenchmark
{
    public string Name => "serve";
    public string Description => "serve vs chat: TTFT and tokens/s (args: URL MODEL_ID MODEL_DIR [PROMPT] " +
        "[MAX_TOKENS] [CLIENTS])";

    public int Run(string[] args)
    {
        if (args.Length < 3)
        {
            Console.Error.WriteLine("usage: serve http://127.0.0.1:8000 MODEL_ID MODEL_DIR [PROMPT] [MAX_TOKENS] " +
                "[CLIENTS]");
            return 2;
        }
        var (url, modelId, folder) = (args[0], args[1], args[2]);
        var prompt = args.Length > 3 ? args[3] : "你是谁？";
        var maxTokens = args.Length > 4 ? int.Parse(args[4]) : 64;
        var clients = args.Length > 5 ? int.Parse(args[5]) : 8;

        var chat = ChatInProcess(folder, prompt, maxTokens);
        Report("chat (in-process)", 1, [chat]);
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(10) };
        Stream(http, modelId, prompt, maxTokens).GetAwaiter().GetResult(); // warm-up
        var one = Enumerable.Range(0, 3).Select(_ => Stream(http, modelId, prompt, maxTokens).GetAwaiter().GetResult())
            .ToList();
        Report("serve, 1 client", 1, one);
        var wall = Stopwatch.StartNew();
        var many = Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Stream(http, modelId, prompt, maxTokens)))
            .GetAwaiter().GetResult();
        wall.Stop();
        Report($"serve, {clients} concurrent", clients, many, wall.Elapsed.TotalSeconds);
        return 0;
    }

    private sealed record Sample(double FirstTokenSeconds, double TotalSeconds, int Tokens);

    private static Sample ChatInProcess(string folder, string prompt, int maxTokens)
    {
        using var session = ChatSession.Open(folder);
        var options = new GenerationOptions(MaxNewTokens: maxTokens);
        session.Answer(prompt, options); // warm-up
        var watch = Stopwatch.StartNew();
        double? first = null;
        var result = session.Reply([new ChatMessage("user", prompt)], options,
            _ => first ??= watch.Elapsed.TotalSeconds);
        return new Sample(first ?? watch.Elapsed.TotalSeconds, watch.Elapsed.TotalSeconds, result.TokenIds.Count);
    }

    private static async Task<Sample> Stream(HttpClient http, string model, string prompt, int maxTokens)
    {
        var body = new JsonObject
        {
            ["model"] = model, ["max_tokens"] = maxTokens, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt }),
        };
        var watch = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
            { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        request.Headers.Authorization = Environment.GetEnvironmentVariable("FINETUNE_API_KEY") is { } key
            ? new AuthenticationHeaderValue("Bearer", key) : null;
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double? first = null;
        var tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            var chunk = JsonNode.Parse(line[6..])!;
            if (chunk["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"] is JsonValue content
                && content.GetValue<string>().Length > 0) first ??= watch.Elapsed.TotalSeconds;
            if (chunk["usage"] is JsonObject usage) tokens = (int)usage["completion_tokens"]!;
        }
        return new Sample(first ?? watch.Elapsed.TotalSeconds, watch.Elapsed.TotalSeconds, tokens);
    }

    private static void Report(string what, int clients, IReadOnlyList<Sample> samples, double? wallSeconds = null)
    {
        var ttft = samples.Select(s => s.FirstTokenSeconds).Order().ToList();
        var perRequest = samples.Average(s => s.Tokens / s.TotalSeconds);
        var aggregate = wallSeconds is { } wall ? samples.Sum(s => s.Tokens) / wall : perRequest;
        Console.WriteLine($"{what,-22} TTFT median {ttft[ttft.Count / 2] * 1000,7:0.0} ms (max {ttft[^1] * 1000:0.0}), " +
            $"{perRequest,7:0.0} tok/s per request, {aggregate,7:0.0} tok/s total, " +
            $"{samples.Average(s => s.Tokens):0} tokens each");
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            benchmark = "serve", what, clients, ttft_median_ms = ttft[ttft.Count / 2] * 1000,
            ttft_max_ms = ttft[^1] * 1000, tokens_per_s_per_request = perRequest, tokens_per_s_total = aggregate,
        }));
    }
}
