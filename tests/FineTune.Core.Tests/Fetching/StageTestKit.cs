using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.Core.Tests.Fetching;

/// <summary>A temporary folder removed at the end of the test.</summary>
public sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateDirectory(
        System.IO.Path.Combine(System.IO.Path.GetTempPath(), "finetune-tests-" + Guid.NewGuid().ToString("N"))).FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public string Folder(string name) => Directory.CreateDirectory(System.IO.Path.Combine(Path, name)).FullName;

    /// <summary>Writes a text file (LF line endings) under the folder and returns its full path.</summary>
    public string Write(string relative, string text)
    {
        var full = System.IO.Path.Combine(Path, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(full)!);
        System.IO.File.WriteAllText(full, text.ReplaceLineEndings("\n"));
        return full;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public sealed class RecordingLog : IStageLog
{
    public List<string> Infos { get; } = [];
    public List<string> Warnings { get; } = [];
    public List<StageProgress> Progresses { get; } = [];

    public void Info(string message) { lock (Infos) Infos.Add(message); }
    public void Warning(string message) { lock (Warnings) Warnings.Add(message); }
    public void Progress(StageProgress progress) { lock (Progresses) Progresses.Add(progress); }
}

/// <summary>Builds what the runner would hand a stage: a pipeline file in a folder, an empty output folder, inputs.</summary>
public static class StageTestKit
{
    public static PipelineDefinition Pipeline(TempFolder folder, Func<string, SourceLocation?>? sourceMap = null) => new()
    {
        Name = "test",
        FilePath = folder.File("pipeline.yaml"),
        SourceMap = sourceMap,
    };

    public static StageContext Context(PipelineDefinition pipeline, string stage, string outputDirectory,
        IReadOnlyDictionary<string, string>? inputs = null, IStageLog? log = null) => new()
    {
        Pipeline = pipeline,
        PipelineDirectory = pipeline.Directory,
        OutputDirectory = Directory.CreateDirectory(outputDirectory).FullName,
        WorkDirectory = Directory.CreateDirectory(outputDirectory + ".work").FullName,
        InputDirectories = inputs ?? new Dictionary<string, string>(),
        Log = log ?? new RecordingLog(),
        Environment = ComputeEnvironment.None,
        Name = stage,
    };
}
