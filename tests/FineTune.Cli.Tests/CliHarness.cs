[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace FineTune.Cli.Tests;

/// <summary>Runs the tool in-process, capturing stdout and stderr, from a temporary working folder.</summary>
public sealed class CliHarness : IDisposable
{
    public string Folder { get; } = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "finetune-cli-" + Guid.NewGuid().ToString("N")[..10])).FullName;

    public sealed record Result(int ExitCode, string Out, string Error);

    public string Write(string relative, string text)
    {
        var path = Path.Combine(Folder, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text.ReplaceLineEndings("\n"));
        return path;
    }

    public async Task<Result> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        // The CLI prints paths relative to the working folder, which is process-wide: one command at a time.
        await Gate.WaitAsync();
        var previous = Directory.GetCurrentDirectory();
        try
        {
            Directory.SetCurrentDirectory(Folder);
            var code = await CliApplication.RunAsync(args, stdout, stderr);
            return new Result(code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Directory.SetCurrentDirectory(previous);
            Gate.Release();
        }
    }

    private static readonly SemaphoreSlim Gate = new(1, 1);

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
