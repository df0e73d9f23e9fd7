namespace FineTune.Cli.Tests;

public sealed class RunFlagsTests : IDisposable
{
    private readonly CliHarness _cli = new();

    public void Dispose() => _cli.Dispose();

    [Fact]
    public async Task Restart_and_resume_with_changes_exclude_each_other()
    {
        var result = await _cli.Run("run", "absent.yaml", "--restart", "--resume-with-changes");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("FT0905", result.Error);
        Assert.Contains("--restart and --resume-with-changes exclude each other", result.Error);
    }

    [Fact]
    public async Task Run_help_lists_the_checkpoint_and_offline_flags()
    {
        var result = await _cli.Run("run", "--help");
        foreach (var flag in new[] { "--restart", "--resume-with-changes", "--offline" }) Assert.Contains(flag, result.Out);
    }
}
