using System.Runtime.InteropServices;
using System.Text;
using FineTune.Core;

namespace FineTune.Cli;

/// <summary>
/// Starts the tool again in the same process (execve) with jemalloc preloaded when FINETUNE_ALLOCATOR=jemalloc asks
/// for it (<see cref="NativeAllocator"/>): an allocator can only be preloaded before the process starts. execve keeps
/// the process id, its standard streams and its signals, so callers (shells, MSBuild, launchers of data-parallel
/// ranks) see one process as before.
/// </summary>
internal static class AllocatorRelaunch
{
    /// <summary>Returns only when it does not relaunch (or execve fails: the run goes on with glibc malloc).</summary>
    public static void IfAsked()
    {
        var library = NativeAllocator.PreloadFor(Environment.GetEnvironmentVariable(NativeAllocator.Variable),
            Environment.GetEnvironmentVariable("LD_PRELOAD"), OperatingSystem.IsLinux(), File.Exists);
        if (library is null) return;
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
            .Where(entry => (string)entry.Key != "LD_PRELOAD")
            .Select(entry => $"{entry.Key}={entry.Value}")
            .Append("LD_PRELOAD=" + NativeAllocator.WithPreload(library,
                Environment.GetEnvironmentVariable("LD_PRELOAD")));
        execve("/proc/self/exe", [.. arguments, null], [.. environment, null]);
    }

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int execve(string path, string?[] argv, string?[] envp);
}
