using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using FineTune.Cli.Output;
using FineTune.Core;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>report PIPELINE</c>: where the evaluate stage's report of the last run is (report.md, report.json, the plots),
/// with its main figures; opens nothing. <c>--json</c> prints the paths and report.json's figures.
/// </summary>
internal static class ReportCommand
{
    private const string Stage = "evaluate";

    public static Command Create(CliConsole console)
    {
        var command = new Command("report",
            "Print where the evaluation report of the pipeline's last run is, and its main figures.");
        var file = PipelineOptions.File();
        var json = PipelineOptions.Json();
        command.Arguments.Add(file);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var directory = ReportDirectory(parse.GetValue(file)!.FullName);
            var markdown = Path.Combine(directory, "report.md");
            var report = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "report.json")))!.AsObject();
            var plots = (report["plots"] as JsonArray ?? []).Select(p => Path.Combine(directory, p!.GetValue<string>()))
                .ToList();
            if (parse.GetValue(json))
            {
                var output = new JsonObject
                {
                    ["directory"] = directory,
                    ["markdown"] = markdown,
                    ["json"] = Path.Combine(directory, "report.json"),
                    ["plots"] = new JsonArray([.. plots.Select(p => (JsonNode)p)]),
                    ["report"] = report.DeepClone(),
                };
                console.Out.WriteLine(output.ToJsonString(JsonText.Indented));
                return ExitCodes.Ok;
            }
            console.Out.WriteLine(markdown);
            foreach (var plot in plots) console.Out.WriteLine(plot);
            console.Out.WriteLine(Figures(report));
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The committed evaluate output that the pipeline's lock file records.</summary>
    private static string ReportDirectory(string pipelinePath)
    {
        if (!File.Exists(pipelinePath)) throw new FineTuneException(DiagnosticCodes.ReportNotAvailable,
            $"pipeline file '{pipelinePath}' does not exist");
        var pipeline = PipelineLoader.LoadOrThrow(pipelinePath);
        var locked = LockFile.Read(LockFile.PathFor(pipeline.FilePath));
        if (!locked.Stages.TryGetValue(Stage, out var evaluate))
            throw new FineTuneException(DiagnosticCodes.ReportNotAvailable,
                $"{pipelinePath}: the evaluate stage has not run yet; run 'dotnet finetune run {pipelinePath}' first");
        var directory = new StageStore(pipeline.StorePath).OutputDirectory(Stage, evaluate.Key);
        return File.Exists(Path.Combine(directory, "report.json"))
            ? directory
            : throw new FineTuneException(DiagnosticCodes.ReportNotAvailable,
                $"{pipelinePath}: the report recorded in the lock file is not in the store (was it " +
                "garbage-collected?); run the pipeline again");
    }

    private static string Figures(JsonObject report)
    {
        string Figure(JsonNode? node, string format, double scale = 1) => node is JsonValue value
            ? (value.GetValue<double>() * scale).ToString(format, CultureInfo.InvariantCulture) : "n/a";
        var line = $"validation loss {Figure(report["loss"], "0.0000")}, perplexity " +
            $"{Figure(report["perplexity"], "0.00")}, token accuracy {Figure(report["token_accuracy"], "0.00", 100)} %";
        if (report["sample"]?["tuned"] is JsonObject tuned)
            line += $"; BLEU-4 {Figure(tuned["bleu4"], "0.00")}, ROUGE-L {Figure(tuned["rougeL"], "0.00")}" +
                (report["sample"]?["base"] is JsonObject baseScores
                    ? $" (base: {Figure(baseScores["bleu4"], "0.00")}, {Figure(baseScores["rougeL"], "0.00")})" : "");
        return line;
    }
}
