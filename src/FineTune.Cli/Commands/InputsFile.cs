using System.CommandLine;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>run --inputs-file PATH</c>: after a successful run, writes the absolute paths of the local files the pipeline
/// read (the pipeline file, its <c>extends</c> bases, a local fetch file, a local tokenizer), one per line. Build
/// integration (FineTune.MSBuild) uses them as the Inputs of its target, so a build re-runs the pipeline only when
/// one of them is newer than its stamp; the content-hash cache then decides what actually runs.
/// </summary>
public static class InputsFile
{
    public static Option<FileInfo?> Option() => new("--inputs-file")
    {
        Description = "After a successful run, write the absolute paths of the local files the pipeline read to this file, one per line.",
    };

    public static void Write(string path, PipelineDefinition pipeline)
    {
        var files = new List<string>();
        for (var file = Path.GetFullPath(pipeline.FilePath); file is not null && File.Exists(file) && !files.Contains(file); file = BaseOf(file))
            files.Add(file);

        var fetch = pipeline.Stages.Fetch;
        if (fetch.Url is null && fetch.Path is not null) files.Add(Path.GetFullPath(Path.Combine(pipeline.Directory, fetch.Path)));
        if (pipeline.Stages.Tokenize.Tokenizer != ChatTokenizer.Gpt2)
        {
            var folder = Path.GetFullPath(Path.Combine(pipeline.Directory, pipeline.Stages.Tokenize.Tokenizer));
            files.Add(Path.Combine(folder, ChatTokenizer.TokenizerJsonFile));
            files.Add(Path.Combine(folder, ChatTokenizer.TokenizerConfigFile));
        }

        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        // "\n" on every OS so that the MSBuild targets split the list the same way everywhere.
        File.WriteAllText(path, string.Concat(files.Where(File.Exists).Distinct().Select(f => f + "\n")));
    }

    private static string? BaseOf(string pipelineFile)
    {
        var node = YamlTree.Parse(File.ReadAllText(pipelineFile), pipelineFile, new List<Diagnostic>());
        return node is YMap map && map["extends"] is YScalar { IsNull: false } extends
            ? Path.GetFullPath(Path.Combine(Path.GetDirectoryName(pipelineFile)!, extends.Value))
            : null;
    }
}
