using System.Diagnostics;

namespace FineTune.Cli.Tests.Faults;

/// <summary>
/// <c>dotnet finetune</c> as a child process (signals need a process of their own), optionally told by
/// FINETUNE_TEST_SIGNAL_AT to send itself a signal at a named point of a stage.
/// </summary>
internal static class ChildRun
{
    public sealed record Result(int ExitCode, string Out, string Error)
    {
        public override string ToString() => $"exit {ExitCode}\n{Out}\n{Error}";
    }

    public static async Task<Result> Run(string folder, string? signalAt, params string[] args)
    {
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        // A test run started in the background by a non-interactive shell inherits SIGINT ignored (POSIX does so for
        // asynchronous commands), and the child, like any program that respects it, would never see the Ctrl+C it
        // sends itself; env(1) gives it the default disposition back.
        var info = SigintIgnored() ? new ProcessStartInfo("env", ["--default-signal=INT", dotnet])
            : new ProcessStartInfo(dotnet);
        info.WorkingDirectory = folder;
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "dotnet-finetune.dll"));
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["FINETUNE_TEST_SIGNAL_AT"] = signalAt;
        info.Environment["NO_COLOR"] = "1";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try { await process.WaitForExitAsync(limit.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet finetune {string.Join(' ', args)} ({signalAt}) did not end: " +
                await stdout + await stderr);
        }
        return new Result(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Whether this process ignores SIGINT (bit 2 of SigIgn in /proc/self/status).</summary>
    private static bool SigintIgnored() => File.Exists("/proc/self/status")
        && File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal))
            is { } line
        && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 2) != 0;
}
