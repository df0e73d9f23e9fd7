namespace FineTune.Cli.Tests.Faults;

/// <summary>The one place that maps failures to exit codes, for a full disk met outside any stage.</summary>
public class DiskFullReportTests
{
    // What .NET throws on Linux when write(2) fails with ENOSPC (28) or EDQUOT (122): the errno as HResult, and the
    // path after " : " (as DiskFullTests sees from a real tmpfs).
    [Theory]
    [InlineData(28, "No space left on device")]
    [InlineData(122, "Disk quota exceeded")]
    public void A_full_disk_outside_a_stage_is_FT0916_with_the_path_and_exit_code_3(int errno, string text)
    {
        if (OperatingSystem.IsWindows()) return; // Windows reports ERROR_DISK_FULL instead
        var stderr = new StringWriter();
        var console = new CliConsole(new StringWriter(), stderr, Verbose: false);

        var code = console.Report(new IOException($"{text} : '/data/pipelines/tiny.lock.yaml.42.tmp'", errno));

        Assert.Equal(3, code);
        Assert.StartsWith("error FT0916: disk full at /data/pipelines/tiny.lock.yaml.42.tmp", stderr.ToString());
        Assert.DoesNotContain("internal error", stderr.ToString());
    }

    [Fact]
    public void Another_io_error_stays_an_internal_error()
    {
        var stderr = new StringWriter();
        var code = new CliConsole(new StringWriter(), stderr, Verbose: false).Report(new IOException("broken", 5));
        Assert.Equal(1, code);
        Assert.DoesNotContain("FT0916", stderr.ToString());
    }
}
