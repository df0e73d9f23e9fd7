using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace FineTune.MSBuild.Tests;

/// <summary>
/// A project in a temporary folder that uses the FineTune.MSBuild props and targets of this repository, its task
/// assembly and the CLI built from this repository (as FineTuneToolPath), built with a real <c>dotnet build</c>.
/// </summary>
public sealed class SampleProject : IDisposable
{
    public static string RepositoryRoot { get; } = Metadata("RepositoryRoot");
    public static string Configuration { get; } = Metadata("Configuration");

    public static string TaskAssembly => Path.Combine(RepositoryRoot, "src", "FineTune.MSBuild", "bin", Configuration, "net10.0", "FineTune.MSBuild.dll");
    public static string CliDll => Path.Combine(RepositoryRoot, "src", "FineTune.Cli", "bin", Configuration, "net10.0", "dotnet-finetune.dll");

    public string Folder { get; } = Directory.CreateTempSubdirectory("finetune-msbuild-").FullName;

    public SampleProject()
    {
        // Only this folder's packages: nothing to restore, and no network.
        Write("nuget.config", """
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /></packageSources></configuration>
            """);
        Write("Program.cs", "internal static class Program { private static void Main() { } }");
    }

    public void WriteProject(string items, string properties = "")
    {
        var build = Path.Combine(RepositoryRoot, "src", "FineTune.MSBuild", "build");
        Write("Sample.csproj", $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <Import Project="{build}/FineTune.MSBuild.props" />
              <PropertyGroup>
                <TargetFramework>net10.0</TargetFramework>
                <OutputType>Exe</OutputType>
                <FineTuneTaskAssembly>{TaskAssembly}</FineTuneTaskAssembly>
                <FineTuneToolPath>{CliDll}</FineTuneToolPath>
                <FineTuneDevice>cpu</FineTuneDevice>
                {properties}
              </PropertyGroup>
              <ItemGroup>
                {items}
              </ItemGroup>
              <Import Project="{build}/FineTune.MSBuild.targets" />
              <Target Name="ShowExports" AfterTargets="FineTuneRun">
                <Message Importance="high" Text="EXPORT-FILE %(FineTuneExportFile.RelativePath)" />
              </Target>
            </Project>
            """);
    }

    public void WriteFixture(string name, string? destination = null) =>
        Write(destination ?? name, File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", name)));

    public void Write(string relativePath, string text)
    {
        var path = Path.Combine(Folder, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    public string PathOf(string relativePath) => Path.Combine(Folder, relativePath);

    public Task<BuildResult> Build(params string[] arguments) => Dotnet(Folder, ["build", "-nologo", "-nodeReuse:false", .. arguments]);

    public static async Task<BuildResult> Dotnet(string workingDirectory, string[] arguments, IDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        // A test host's MSBuild settings must not leak into the child build.
        foreach (var name in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH" }) start.Environment.Remove(name);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;

        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var error = process.StandardError.ReadToEndAsync();
        var standardOutput = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} did not finish in 4 minutes:\n{await standardOutput}");
        }
        return new BuildResult(process.ExitCode, await standardOutput + await error);
    }

    private static string Metadata(string key) =>
        typeof(SampleProject).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value!;

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public sealed record BuildResult(int ExitCode, string Output)
{
    public const string RunMarker = "FineTune: running pipeline";

    public bool RanPipeline => Output.Contains(RunMarker, StringComparison.Ordinal);

    /// <summary>The CLI's per-stage line: "train     runs: ..." or "fetch     up to date".</summary>
    public bool StageRan(string stage) => Output.Contains($"{stage,-9} runs:", StringComparison.Ordinal);

    public bool StageUpToDate(string stage) => Output.Contains($"{stage,-9} up to date", StringComparison.Ordinal);

    public override string ToString() => $"exit code {ExitCode}\n{Output}";
}
