using System.Runtime.InteropServices;
using System.Text;
using FineTune.Core;

namespace FineTune.Cli;

/// <summary>
/// Starts the tool again in the same process (execve) on the allocator <see cref="NativeAllocator"/> chooses, for the
/// commands that compute with libtorch: an allocator and its settings can only be chosen before the process starts.
/// execve keeps the process id, its standard streams and its signals, so callers (shells, MSBuild, launchers of
/// data-parallel ranks) see one process as before. It costs one more start of the runtime (about 0.1 s), which the
/// commands that do not compute (validate, status, cache, report, diff, ...) do not pay.
/// </summary>
internal static class AllocatorRelaunch
{
    private static readonly HashSet<string> ComputingCommands =
        new(["run", "chat", "generate", "score", "serve", "info"], StringComparer.Ordinal);

    /// <summary>Returns only when it does not relaunch (or execve fails: the run goes on as it started).</summary>
    public static void IfNeeded(string[] args)
    {
        if (args.Length == 0 || !ComputingCommands.Contains(args[0])) return;
        var wanted = NativeAllocator.EnvironmentFor(Environment.GetEnvironmentVariable(NativeAllocator.Variable),
            Environment.GetEnvironmentVariable, OperatingSystem.IsLinux(), File.Exists);
        if (wanted is null) return;
        string[] arguments;
        try
        {
            // The exact argv of this start (dotnet exec x.dll ..., or the app host): GetCommandLineArgs loses the host.
            arguments = File.ReadAllText("/proc/self/cmdline", Encoding.UTF8).TrimEnd('\0').Split('\0');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Where(entry => !wanted.ContainsKey((string)entry.Key))
            .Select(entry => $"{entry.Key}={entry.Value}")
            .Concat(wanted.Select(kv => $"{kv.Key}={kv.Value}"));
        execve("/proc/self/exe", [.. arguments, null], [.. environment, null]);
    }

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int execve(string path, string?[] argv, string?[] envp);
}
