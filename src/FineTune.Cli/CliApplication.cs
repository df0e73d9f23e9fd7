using System.CommandLine;
using System.Reflection;
using FineTune.Cli.Commands;
using FineTune.Core.Diagnostics;
using FineTune.Core.Stages;
using FineTune.Torch.Stages;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace FineTune.Cli;

/// <summary>
/// The app host: services in a <see cref="IHost"/> container, commands parsed by System.CommandLine, and one place
/// that maps failures to exit codes (documented in --help) and prints them without stack traces.
/// </summary>
internal static class CliApplication
{
    public static string ToolVersion { get; } =
        typeof(CliApplication).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()
            ?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    private const string ExitCodeHelp = """
        dotnet finetune: reproducible LLM fine-tuning pipelines (fetch, format, tokenize, train, evaluate, export).

        Exit codes:
          0    success
          1    internal error (a bug: please report it with the output of --verbose)
          2    invalid input: pipeline file, data, arguments
          3    a stage failed while running
          130  cancelled (Ctrl+C)
        """;

    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddTransient(_ => PipelineStages.CreateRunner(ToolVersion));
        using var host = builder.Build();
        var console = new CliConsole(stdout, stderr, Verbose: args.Contains("--verbose") || args.Contains("-v"));

        var root = new RootCommand(ExitCodeHelp);
        root.Options.Add(GlobalOptions.Verbose);
        root.Subcommands.Add(RunCommand.Create(host.Services, console, dryRun: false));
        root.Subcommands.Add(RunCommand.Create(host.Services, console, dryRun: true));
        root.Subcommands.Add(LaunchCommand.Create(console));
        root.Subcommands.Add(ValidateCommand.Create(host.Services, console));
        root.Subcommands.Add(SchemaCommand.Create(console));
        root.Subcommands.Add(CacheCommand.Create(console));
        root.Subcommands.Add(ChatCommand.Create(host.Services, console));
        root.Subcommands.Add(Commands.Serve.ServeCommand.Create(console));
        root.Subcommands.Add(Commands.Diff.DiffCommand.Create(console));
        root.Subcommands.Add(ScoreCommand.Create(console));
        root.Subcommands.Add(GenerateCommand.Create(console));
        root.Subcommands.Add(TokenizeCommand.Create(console));
        root.Subcommands.Add(InspectCommand.Create(host.Services, console));
        root.Subcommands.Add(ReportCommand.Create(console));
        root.Subcommands.Add(InfoCommand.Create(console));
        root.Subcommands.Add(CodesCommand.Create(console));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors) stderr.WriteLine($"error FT0001: {error.Message}");
            stderr.WriteLine("Run 'dotnet finetune --help' for usage.");
            return ExitCodes.InvalidInput;
        }

        using var cancellation = new CancellationTokenSource();
        // What stopping means for this command, in the message a first Ctrl+C or SIGTERM prints.
        var stopping = args.FirstOrDefault() switch
        {
            "run" => "stopping the current stage (training saves a checkpoint first)",
            "serve" => "stopping the server (requests in flight finish or are cancelled)",
            _ => "stopping",
        };
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cancellation.IsCancellationRequested) return; // a second Ctrl+C ends the process at once
            e.Cancel = true;
            stderr.WriteLine($"\nCancelling: {stopping}; Ctrl+C again to abort at once...");
            cancellation.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (how build tools and service managers stop a process) cancels like a first Ctrl+C, and never aborts.
        using var onTerminate = OperatingSystem.IsWindows() ? null
            : System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                if (cancellation.IsCancellationRequested) return;
                stderr.WriteLine($"\nTerminating: {stopping}...");
                cancellation.Cancel();
            });
        try
        {
            // Before anything touches TorchSharp: its shim must bind to this libtorch, not the bundled one.
            FineTune.Torch.Native.ExternalLibTorch.LoadFromEnvironment();
            var configuration = new InvocationConfiguration { ProcessTerminationTimeout = null,
                EnableDefaultExceptionHandler = false, Output = stdout, Error = stderr };
            return await parse.InvokeAsync(configuration, cancellation.Token);
        }
        catch (Exception e)
        {
            return console.Report(e);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}

internal static class GlobalOptions
{
    public static readonly Option<bool> Verbose = new("--verbose", "-v") { Description = "Show stack traces and " +
        "extra detail.", Recursive = true };
}

/// <summary>Where commands write: results on stdout, diagnostics and progress on stderr.</summary>
internal sealed record CliConsole(TextWriter Out, TextWriter Error, bool Verbose)
{
    public bool Interactive => ReferenceEquals(Error, Console.Error) && !Console.IsErrorRedirected
        && Environment.GetEnvironmentVariable("NO_COLOR") is null;

    public void Print(IEnumerable<Diagnostic> diagnostics)
    {
        foreach (var diagnostic in diagnostics) Error.WriteLine(diagnostic.Format());
    }

    /// <summary>Prints a failure in one clear line (more with --verbose) and returns its exit code.</summary>
    public int Report(Exception exception)
    {
        switch (exception)
        {
            case FineTuneException user:
                Print(user.Diagnostics);
                if (Verbose) Error.WriteLine(user.StackTrace);
                return user.ExitCode;
            case not FineTuneException when DiskFull.Is(exception):
                // A write outside any stage (the lock file, the run record, a cache): same words, same exit code.
                return Report(DiskFull.Error(exception));
            case OperationCanceledException:
                Error.WriteLine("cancelled: nothing incomplete was committed; run again to continue (checkpoints are " +
                    "kept)");
                return ExitCodes.Cancelled;
            case StageFailedException failed:
                Error.WriteLine($"error FT0900: {failed.Message}");
                Error.WriteLine(Verbose ? failed.InnerException?.ToString()
                    : "(run with --verbose for the stack trace; nothing of this stage was committed)");
                return ExitCodes.StageFailed;
            default:
                Error.WriteLine($"internal error: {exception.GetType().Name}: {exception.Message}");
                Error.WriteLine(Verbose ? exception.ToString()
                    : "(run with --verbose for the stack trace, and please report it)");
                return ExitCodes.InternalError;
        }
    }
}
