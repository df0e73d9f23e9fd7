using FineTune.Core.Caching;
using System.CommandLine;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>run --inputs-file PATH</c>: after a successful run, writes the absolute paths of the user's files the pipeline
/// read, one per line: the pipeline file and its <c>extends</c> bases, then every local file a stage recorded as an
/// input (the data, a tokenizer or model folder's files, a .jinja template). Build integration (FineTune.MSBuild) uses
/// them as the Inputs of its target, so a build re-runs the pipeline only when one of them is newer than its stamp;
/// the content-hash cache then decides what actually runs.
/// </summary>
internal static class InputsFile
{
    public static Option<FileInfo?> Option() => new("--inputs-file")
    {
        Description = "After a successful run, write the absolute paths of the local files the pipeline read to this " +
            "file, one per line.",
    };

    public static void Write(string path, PipelineDefinition pipeline, IReadOnlyList<StageOutcome> outcomes)
    {
        var files = pipeline.SourceFiles
            .Concat(outcomes.SelectMany(o => o.Inputs)
                .Where(i => i.Kind == StageInputKind.LocalFile).Select(i => i.Path!))
            .Distinct(StringComparer.Ordinal);

        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        // "\n" on every OS so that the MSBuild targets split the list the same way everywhere.
        File.WriteAllText(path, string.Concat(files.Select(f => f + "\n")));
    }
}
