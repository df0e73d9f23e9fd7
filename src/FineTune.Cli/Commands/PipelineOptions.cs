using System.CommandLine;
using FineTune.Core.Pipeline;

namespace FineTune.Cli.Commands;

/// <summary>The arguments every pipeline command shares.</summary>
internal static class PipelineOptions
{
    public static Argument<FileInfo> File()
        => new("pipeline") { Description = "The pipeline YAML file (for example pipelines/huanhuan.yaml)." };

    public static Option<string[]> Set() => new("--set")
    {
        Description = "Override a setting: stage.key=value (for example --set train.learning_rate=2e-4). Repeatable.",
        AllowMultipleArgumentsPerToken = false,
    };

    public static Option<bool> Json()
        => new("--json") { Description = "Write one JSON document to stdout instead of text." };

    /// <summary>Loads the pipeline, printing every diagnostic; null when there are errors.</summary>
    public static PipelineDefinition? Load(CliConsole console, FileInfo file, string[]? sets)
    {
        var result = PipelineLoader.Load(file.FullName, sets ?? []);
        console.Print(result.Diagnostics);
        return result.Pipeline;
    }
}
