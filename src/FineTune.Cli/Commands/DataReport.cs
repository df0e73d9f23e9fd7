using System.Globalization;
using System.Text.Json.Nodes;
using FineTune.Cli.Output;
using FineTune.Core.Hub;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Training;
using Microsoft.Extensions.DependencyInjection;
using static TorchSharp.torch;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>validate --data</c>: runs (or reuses) the stages up to tokenize and prints what the data looks like before any
/// training: the format stage's checks, lengths against max_length with the share of trained tokens lost, a
/// length histogram, and the train stage's steps and estimated time.
/// </summary>
internal static class DataReport
{
    public static async Task<int> PrintAsync(IServiceProvider services, CliConsole console, PipelineDefinition pipeline,
        CancellationToken cancellationToken)
    {
        var runner = services.GetRequiredService<PipelineRunner>();
        var observer = new ConsoleObserver(console.Error, console.Error, console.Interactive);
        var outcomes = await runner.RunAsync(pipeline, new RunOptions { Until = "tokenize" }, observer,
            cancellationToken);
        string Output(string stage) => outcomes.Single(o => o.Stage == stage).OutputDirectory!;
        var text = console.Out;

        var checksPath = Path.Combine(Output("format"), "checks.json");
        if (File.Exists(checksPath) && JsonNode.Parse(File.ReadAllText(checksPath)) is JsonObject checks)
        {
            text.WriteLine($"data: {checks["records"]} records from {checks["source"]}");
            foreach (var severity in new[] { "errors", "warnings" })
                foreach (var finding in checks[severity]?.AsArray() ?? [])
                    text.WriteLine($"  {finding!["severity"]} {finding["category"]}: {finding["count"]} records " +
                        $"{finding["description"]} ({finding["example"]})");
        }

        var summary = JsonNode.Parse(File.ReadAllText(Path.Combine(Output("tokenize"), "summary.json")))!;
        var train = summary["train"]!;
        var maxLength = summary["max_length"]!.GetValue<int>();
        var examples = train["examples"]!.GetValue<int>();
        var tokens = train["tokens"]!.GetValue<long>();
        var trained = train["trained_tokens"]!.GetValue<long>();
        text.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"tokens: {examples:N0} training examples, {tokens:N0} tokens, {trained:N0} trained; length p50 " +
                $"{train["length_p50"]}, p90 {train["length_p90"]}, max {train["length_max"]}"));
        text.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"over max_length {maxLength}: {train["truncated"]} truncated (losing " +
                $"{train["trained_tokens_lost_share"]!.GetValue<double>():P1} of trained tokens), {train["dropped"]} " +
                $"dropped (nothing trained left)"));
        var histogram = train["length_histogram"]!.AsArray();
        var largest = Math.Max(1, histogram.Max(b => b!["examples"]!.GetValue<int>()));
        foreach (var bucket in histogram)
        {
            var count = bucket!["examples"]!.GetValue<int>();
            text.WriteLine($"  {bucket["from"],5}-{bucket["to"],-5} " +
                $"{new string('#', (int)Math.Ceiling(30.0 * count / largest)),-30} {count:N0}");
        }

        var trainStage = runner.Stages.OfType<TrainStage>().Single();
        var planned = trainStage.DescribeFromData(pipeline, Output("tokenize")).ToList();
        foreach (var line in planned) text.WriteLine(line);
        if (planned.Count < 2)
            text.WriteLine("time: estimated when the model's config.json is available (it is not cached yet)");
        return 0;
    }
}
