using FineTune.TestKit;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace FineTune.Cli.Tests;

/// <summary>Runs the tool in-process, capturing stdout and stderr, from a temporary working folder.</summary>
public sealed class CliHarness : IDisposable
{
    private readonly TempFolder _temp = new();

    public string Folder => _temp.Path;

    public sealed record Result(int ExitCode, string Out, string Error);

    public string Write(string relative, string text) => _temp.Write(relative, text);

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

    public void Dispose() => _temp.Dispose();
}
