namespace FineTune.Core.Pipeline;

/// <summary>A loaded, interpolated, validated pipeline file.</summary>
internal sealed class PipelineDefinition
{
    [Doc("Name of the pipeline; names the lock file's contents and the export."), RequiredSetting]
    public string Name { get; set; } = "";

    [Doc("A base pipeline file (relative to this one) whose settings this file overrides key by key.")]
    public string? Extends { get; set; }

    [Doc("Values usable as ${name} in any string of the file.")]
    public Dictionary<string, string> Params { get; set; } = [];

    [Doc("Folder of the content-addressed store, relative to the pipeline file.")]
    public string Store { get; set; } = ".finetune";

    [Doc("The six stages; each may be omitted to take its defaults.")]
    public StagesSettings Stages { get; set; } = new();

    /// <summary>Full path of the file this pipeline was loaded from (not a YAML key).</summary>
    [NotASetting]
    public string FilePath { get; set; } = "";

    /// <summary>Full paths of the files the loader read: this file, then its <c>extends</c> bases in order.</summary>
    [NotASetting]
    public IReadOnlyList<string> SourceFiles { get; set; } = [];

    /// <summary>
    /// Where a setting was written, for diagnostics: <c>Locate("stages.fetch.path")</c>. Falls back to the nearest
    /// enclosing key that was written, then to the file itself.
    /// </summary>
    public SourceLocation Locate(string keyPath) => SourceMap?.Invoke(keyPath) ?? new SourceLocation(FilePath, 0, 0);

    [NotASetting]
    public Func<string, SourceLocation?>? SourceMap { get; set; }

    public string Directory => Path.GetDirectoryName(Path.GetFullPath(FilePath)) ?? ".";

    public string StorePath => Path.GetFullPath(Path.Combine(Directory, Store));
}

/// <summary>Marks a property the loader, the schema and the lock file ignore.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class NotASettingAttribute : Attribute;

/// <summary>A position in a pipeline file (1-based line and column; 0 when unknown).</summary>
internal sealed record SourceLocation(string File, int Line, int Column)
{
    public Diagnostics.Diagnostic Error(string code, string message)
        => Diagnostics.Diagnostic.Error(code, message, File, Line, Column);
}
