using System.Diagnostics;

namespace FineTune.TestKit;

/// <summary>
/// A real filesystem of a few MB (tmpfs), so that writes fail with the kernel's own ENOSPC. Needs root on Linux:
/// <see cref="TryMount"/> returns null with the reason where it cannot be created, and the test says it skipped.
/// </summary>
internal sealed class SmallFilesystem : IDisposable
{
    private readonly TempFolder _parent;

    public string Path { get; }

    private SmallFilesystem(TempFolder parent, string path) => (_parent, Path) = (parent, path);

    public static SmallFilesystem? TryMount(int kilobytes, out string whyNot)
    {
        whyNot = "";
        if (!OperatingSystem.IsLinux()) { whyNot = "tmpfs mounts need Linux"; return null; }
        if (Environment.UserName != "root") { whyNot = "mounting a tmpfs needs root"; return null; }
        var parent = new TempFolder();
        var path = parent.Folder("small");
        var (code, output) = Run("mount", "-t", "tmpfs", "-o", $"size={kilobytes}k", "tmpfs", path);
        if (code == 0) return new SmallFilesystem(parent, path);
        parent.Dispose();
        whyNot = $"mount -t tmpfs failed ({output.Trim()})";
        return null;
    }

    /// <summary>Unmounts (always: a leaked mount outlives the test run) and removes the folder.</summary>
    public void Dispose()
    {
        Run("umount", "-l", Path);
        _parent.Dispose();
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, args)
            {
                RedirectStandardError = true, RedirectStandardOutput = true,
            })!;
            var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output);
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }
}
