using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml;
using System.Xml.Linq;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

namespace FineTune.MSBuild;

/// <summary>
/// Runs <c>dotnet finetune run PIPELINE --until STAGE --json</c> in its own process (libtorch never loads in an
/// MSBuild node), yielding the node while it runs. The CLI's canonical diagnostic lines
/// (<c>file(line,col): error FT0102: ...</c>) become MSBuild errors and warnings through ToolTask's own canonical
/// parsing; the export folder comes back from the CLI's JSON result.
/// Built for .NET (<c>dotnet build</c>) and .NET Framework 4.7.2 (Visual Studio's MSBuild), so it uses only APIs that
/// both have: no System.Text.Json (not part of .NET Framework; MSBuild's own copy is not ours to bind to).
/// </summary>
public sealed class RunFineTunePipeline : ToolTask
{
    /// <summary>The pipeline YAML file.</summary>
    [Required]
    public string Pipeline { get; set; } = "";

    /// <summary>Stop after this stage (<c>--until</c>); empty runs every stage.</summary>
    public string? Until { get; set; }

    /// <summary>Compute device, passed as <c>--set train.device=...</c>; empty keeps the pipeline's setting.</summary>
    public string? Device { get; set; }

    /// <summary>Setting overrides, each passed as <c>--set stage.key=value</c>.</summary>
    public string[] Settings { get; set; } = [];

    /// <summary>The download cache folder (FINETUNE_CACHE); empty keeps the CLI's default.</summary>
    public string? CacheDirectory { get; set; }

    /// <summary>
    /// An explicit CLI: an executable, or a <c>dotnet-finetune.dll</c> run with <c>dotnet</c>. Empty runs <c>dotnet
    /// finetune</c> (the local or global tool).
    /// </summary>
    public string? FineTuneToolPath { get; set; }

    /// <summary>The tool version this package works with; empty means the version of this task assembly.</summary>
    public string? RequiredToolVersion { get; set; }

    /// <summary>
    /// When <c>dotnet finetune</c> is not available, run <c>dotnet tool restore</c> once (the project's
    /// dotnet-tools.json) and try again.
    /// </summary>
    public bool RestoreTool { get; set; } = true;

    /// <summary>Where the CLI writes the absolute paths of the files the run read (<c>--inputs-file</c>).</summary>
    public string? InputsFile { get; set; }

    /// <summary>The project that declares the pipeline: where errors that are not in a pipeline file point.</summary>
    public string? ProjectFile { get; set; }

    /// <summary>The folder the CLI runs in; its diagnostics name files relative to it.</summary>
    public string? WorkingDirectory { get; set; }

    /// <summary>
    /// How long a cancelled run may take to stop cleanly (finish the step, save a checkpoint) before it is killed.
    /// </summary>
    public int CancelGraceMilliseconds { get; set; } = 30_000;

    /// <summary>
    /// The export folder of the pipeline (absent when the run stopped before export); metadata <c>Pipeline</c>.
    /// </summary>
    [Output]
    public ITaskItem? ExportDirectory { get; private set; }

    /// <summary>
    /// The files of the export folder; metadata <c>RelativePath</c> (inside the folder) and <c>Pipeline</c>.
    /// </summary>
    [Output]
    public ITaskItem[] ExportFiles { get; private set; } = [];

    private readonly StringBuilder _json = new();
    private volatile Process? _process;

    public RunFineTunePipeline()
    {
        YieldDuringToolExecution = true;
        // stdout carries only the --json result; stderr carries progress and diagnostics, which the user should see.
        StandardOutputImportance = "low";
        StandardErrorImportance = "high";
    }

    protected override string ToolName => "dotnet";

    private bool RunsDll => FineTuneToolPath is { Length: > 0 } path
        && path.EndsWith(".dll", StringComparison.OrdinalIgnoreCase);

    private static string DotnetHost => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host
        && File.Exists(host) ? host : "dotnet";

    protected override string GenerateFullPathToTool() =>
        FineTuneToolPath is { Length: > 0 } path && !RunsDll ? Path.GetFullPath(path) : DotnetHost;

    protected override string? GetWorkingDirectory() => string.IsNullOrEmpty(WorkingDirectory) ? null
        : WorkingDirectory;

    /// <summary>The arguments that select the CLI: <c>finetune</c>, a dll, or nothing for an executable.</summary>
    private void AppendToolSelection(CommandLineBuilder builder)
    {
        if (RunsDll) builder.AppendFileNameIfNotNull(Path.GetFullPath(FineTuneToolPath!));
        else if (string.IsNullOrEmpty(FineTuneToolPath)) builder.AppendTextUnquoted("finetune");
    }

    protected override string GenerateCommandLineCommands()
    {
        var builder = new CommandLineBuilder(quoteHyphensOnCommandLine: false, useNewLineSeparator: false);
        AppendToolSelection(builder);
        builder.AppendTextUnquoted(" run");
        builder.AppendFileNameIfNotNull(Path.GetFullPath(Pipeline));
        builder.AppendSwitchIfNotNull("--until ", string.IsNullOrWhiteSpace(Until) ? null : Until!.Trim());
        if (!string.IsNullOrWhiteSpace(Device))
            builder.AppendSwitchIfNotNull("--set ", "train.device=" + Device!.Trim());
        foreach (var setting in Settings.Where(s => !string.IsNullOrWhiteSpace(s)))
            builder.AppendSwitchIfNotNull("--set ", setting.Trim());
        builder.AppendSwitchIfNotNull("--inputs-file ", string.IsNullOrEmpty(InputsFile) ? null
            : Path.GetFullPath(InputsFile!));
        builder.AppendSwitch("--json");
        return builder.ToString();
    }

    public override bool Execute()
    {
        if (!File.Exists(Pipeline))
        {
            Log.LogError(null, "FT0803", null, ProjectFile, 0, 0, 0, 0,
                "FineTunePipeline '"
                + RelativePath(GetWorkingDirectory() ?? Directory.GetCurrentDirectory(), Path.GetFullPath(Pipeline))
                + "' does not exist; fix the Include of the FineTunePipeline item (it is relative to the project "
                + "folder)");
            return false;
        }
        if (!string.IsNullOrEmpty(FineTuneToolPath) && !File.Exists(FineTuneToolPath))
        {
            Log.LogError(null, "FT0801", null, ProjectFile, 0, 0, 0, 0,
                $"FineTuneToolPath '{FineTuneToolPath}' does not exist; point it at the dotnet-finetune executable " +
                $"or dll, or leave it empty to use the tool from dotnet-tools.json ('dotnet tool restore')");
            return false;
        }
        if (!CheckToolVersion()) return false;
        if (!string.IsNullOrEmpty(CacheDirectory))
            EnvironmentVariables = [.. EnvironmentVariables ?? [], "FINETUNE_CACHE="
                + Path.GetFullPath(CacheDirectory!)];

        if (!base.Execute()) return false;
        return ReadResult();
    }

    /// <summary>
    /// Runs <c>--version</c> first, so a missing or mismatched tool is one clear error rather than a confusing failure.
    /// </summary>
    private bool CheckToolVersion()
    {
        var required = string.IsNullOrWhiteSpace(RequiredToolVersion) ? VersionCore(OwnVersion)
            : VersionCore(RequiredToolVersion!);
        var restoreHint = string.IsNullOrEmpty(FineTuneToolPath)
            ? $"run 'dotnet tool restore' in the project folder (its dotnet-tools.json should list finetune.cli " +
                $"{required}), or 'dotnet tool install FineTune.Cli --version {required}' (add -g for a global " +
                $"tool); or set FineTuneToolPath"
            : $"point FineTuneToolPath at FineTune.Cli {required}, or leave it empty to use the tool from " +
                $"dotnet-tools.json ('dotnet tool restore')";

        var builder = new CommandLineBuilder();
        AppendToolSelection(builder);
        builder.AppendSwitch("--version");
        var (exitCode, output) = RunQuietly(GenerateFullPathToTool(), builder.ToString());
        if (exitCode != 0 && RestoreTool && string.IsNullOrEmpty(FineTuneToolPath))
        {
            Log.LogMessage(MessageImportance.High,
                "FineTune: 'dotnet finetune' is not available; running 'dotnet tool restore'");
            var (restoreExit, restoreOutput) = RunQuietly(DotnetHost, "tool restore");
            Log.LogMessage(restoreExit == 0 ? MessageImportance.Low : MessageImportance.High, restoreOutput);
            if (restoreExit == 0) (exitCode, output) = RunQuietly(GenerateFullPathToTool(), builder.ToString());
        }
        var found = exitCode == 0 ? VersionCore(output) : null;
        if (found is null)
        {
            var detail = output.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0);
            Log.LogError(null, "FT0801", null, ProjectFile, 0, 0, 0, 0,
                $"the FineTune tool (FineTune.Cli {required}) is not " +
                $"available{(detail is null ? "" : $" ({detail})")}; {restoreHint}");
            return false;
        }
        if (found != required)
        {
            Log.LogError(null, "FT0802", null, ProjectFile, 0, 0, 0, 0,
                $"FineTune.MSBuild needs FineTune.Cli {required}, but the tool is {found}; {restoreHint}");
            return false;
        }
        return true;
    }

    /// <summary>Runs a short command; stdout, or stdout and stderr when it fails.</summary>
    private (int ExitCode, string Output) RunQuietly(string fileName, string arguments)
    {
        var start = new ProcessStartInfo(fileName, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = GetWorkingDirectory() ?? Directory.GetCurrentDirectory(),
        };
        try
        {
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEndAsync();
            var output = process.StandardOutput.ReadToEnd().Trim();
            if (!process.WaitForExit(120_000))
            {
                KillTree(process);
                return (-1, $"'{fileName} {arguments}' did not finish in 2 minutes");
            }
            return process.ExitCode == 0 ? (0, output) : (process.ExitCode, (output + " " + error.Result).Trim());
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return (-1, e.Message);
        }
    }

    private static string OwnVersion =>
        typeof(RunFineTunePipeline).Assembly
            .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    /// <summary>"1.2.3-dev.4+abc" -> "1.2.3": prerelease builds of one version work together.</summary>
    private static string? VersionCore(string text) => VersionPattern.Match(text) is { Success: true } match
        ? match.Value : null;

    private static readonly Regex VersionPattern = new(@"\d+\.\d+\.\d+", RegexOptions.CultureInvariant);

    private static void KillTree(Process process)
    {
#if NET
        process.Kill(entireProcessTree: true);
#else
        process.Kill();
#endif
    }

    /// <summary>
    /// Path.GetRelativePath, which .NET Framework lacks; a path on another drive comes back absolute.
    /// </summary>
    internal static string RelativePath(string baseDirectory, string path)
    {
        var separators = new[] { Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar };
        var baseParts = Path.GetFullPath(baseDirectory).TrimEnd(separators).Split(separators);
        var pathParts = Path.GetFullPath(path).Split(separators);
        var comparison = RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? StringComparison.OrdinalIgnoreCase
            : StringComparison.Ordinal;
        var common = 0;
        while (common < baseParts.Length && common < pathParts.Length
            && string.Equals(baseParts[common], pathParts[common], comparison)) common++;
        if (common == 0) return Path.GetFullPath(path);
        var parts = Enumerable.Repeat("..", baseParts.Length - common).Concat(pathParts.Skip(common)).ToArray();
        return parts.Length == 0 ? "." : string.Join(Path.DirectorySeparatorChar.ToString(), parts);
    }

    protected override void LogEventsFromTextOutput(string singleLine, MessageImportance messageImportance)
    {
        // With distinct importances the stream is known for sure; stdout is only the JSON result.
        if (messageImportance == StandardOutputImportanceToUse
            && StandardOutputImportanceToUse != StandardErrorImportanceToUse)
        {
            _json.AppendLine(singleLine);
            Log.LogMessage(MessageImportance.Low, singleLine);
            return;
        }
        base.LogEventsFromTextOutput(singleLine, messageImportance);
    }

    private bool ReadResult()
    {
        string? export;
        try
        {
            // The JSON reader both runtimes have: it presents {"export_directory": "..."} as
            // <root><export_directory type="string">.
            var json = Encoding.UTF8.GetBytes(_json.ToString());
            using var reader = JsonReaderWriterFactory.CreateJsonReader(json, XmlDictionaryReaderQuotas.Max);
            var value = XElement.Load(reader).Element("export_directory");
            export = (string?)value?.Attribute("type") == "string" ? value!.Value : null;
        }
        catch (XmlException e)
        {
            Log.LogError(null, "FT0804", null, ProjectFile, 0, 0, 0, 0,
                $"the FineTune tool succeeded but its --json result could not be read ({e.Message}); is " +
                $"FineTuneToolPath a FineTune.Cli?");
            return false;
        }
        if (export is null || !Directory.Exists(export)) return true;

        ExportDirectory = new TaskItem(export, new Dictionary<string, string> { ["Pipeline"] = Pipeline });
        ExportFiles = Directory.EnumerateFiles(export, "*", SearchOption.AllDirectories)
            .OrderBy(f => f, StringComparer.Ordinal)
            .Select(f => (ITaskItem)new TaskItem(f, new Dictionary<string, string>
            {
                ["RelativePath"] = RelativePath(export, f),
                ["Pipeline"] = Pipeline,
            }))
            .ToArray();
        return true;
    }

    protected override Process StartToolProcess(Process proc)
    {
        var started = base.StartToolProcess(proc);
        _process = started;
        return started;
    }

    /// <summary>
    /// ToolTask's own cancel kills the process tree at once. The CLI stops cleanly on SIGTERM (finishes the current
    /// step, saves a checkpoint, commits nothing incomplete), so it gets that first and a grace period to exit.
    /// On a terminal, Ctrl+C has already reached the CLI as SIGINT; the CLI ignores the SIGTERM that follows.
    /// </summary>
    public override void Cancel()
    {
        var process = _process;
        if (process is not null && !RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
        {
            try
            {
                if (!process.HasExited && SendSignal(process.Id, SignalTerminate) == 0)
                    process.WaitForExit(CancelGraceMilliseconds);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // The process is gone already; ToolTask's cancel below has nothing left to kill.
            }
        }
        base.Cancel();
    }

    private const int SignalTerminate = 15;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);
}
