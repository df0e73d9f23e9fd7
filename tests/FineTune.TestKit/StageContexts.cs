using FineTune.Core.Caching;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.TestKit;

/// <summary>Builds what the runner hands a stage: its settings section, an empty output folder, a work folder, its inputs.</summary>
internal static class StageContexts
{
    /// <summary>A pipeline named "test" whose file would be <c>pipeline.yaml</c> in <paramref name="folder"/>.</summary>
    public static PipelineDefinition Pipeline(string folder, Func<string, SourceLocation?>? sourceMap = null) => new()
    {
        Name = "test",
        FilePath = Path.Combine(folder, "pipeline.yaml"),
        SourceFiles = [Path.Combine(folder, "pipeline.yaml")],
        SourceMap = sourceMap,
    };

    /// <param name="stage">The stage's name: its settings are the section of <c>stages:</c> of that name.</param>
    /// <param name="pipelineDirectory">Where relative settings resolve, when <paramref name="pipeline"/> has no file.</param>
    /// <param name="upstream">Contexts of stages that ran before, by name: their output folders and summaries become this one's inputs.</param>
    public static StageContext For(PipelineDefinition pipeline, string stage, string outputDirectory,
        IReadOnlyDictionary<string, string>? inputs = null, IStageLog? log = null, ComputeEnvironment? environment = null,
        IReadOnlyDictionary<string, StageContext>? upstream = null, string? pipelineDirectory = null) => new()
    {
        Pipeline = pipeline,
        Settings = pipeline.Stages.Section(stage) ?? new object(),
        PipelineDirectory = pipelineDirectory ?? pipeline.Directory,
        OutputDirectory = Directory.CreateDirectory(outputDirectory).FullName,
        WorkDirectory = Directory.CreateDirectory(outputDirectory + ".work").FullName,
        InputDirectories = inputs ?? upstream?.ToDictionary(kv => kv.Key, kv => kv.Value.OutputDirectory) ?? new Dictionary<string, string>(),
        InputEntries = upstream?.ToDictionary(kv => kv.Key, kv => EntryOf(kv.Value)) ?? new Dictionary<string, StoreEntry>(),
        Log = log ?? new RecordingLog(),
        Environment = environment ?? ComputeEnvironment.None,
        Name = stage,
    };

    /// <summary>A store entry as the runner would have committed for a context whose stage finished (its summary and environment).</summary>
    public static StoreEntry EntryOf(StageContext done) => new()
    {
        Stage = done.Name,
        Key = "test",
        Implementation = 0,
        Settings = new SortedDictionary<string, object?>(StringComparer.Ordinal),
        Inputs = new SortedDictionary<string, FileRecord>(StringComparer.Ordinal),
        Outputs = new SortedDictionary<string, FileRecord>(StringComparer.Ordinal),
        OutputHash = "",
        Environment = done.Environment.IsNone
            ? new SortedDictionary<string, string>(StringComparer.Ordinal)
            : new SortedDictionary<string, string>(StringComparer.Ordinal) { [ComputeEnvironment.DeviceKey] = done.Environment.Device },
        Summary = new SortedDictionary<string, object?>(done.Summary.ToDictionary(kv => kv.Key, kv => SettingsReflection.ToPlainValue(kv.Value)), StringComparer.Ordinal),
        StartedUtc = DateTime.UnixEpoch,
        DurationSeconds = 0,
    };
}
