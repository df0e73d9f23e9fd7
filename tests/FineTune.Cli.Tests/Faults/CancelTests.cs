namespace FineTune.Cli.Tests.Faults;

/// <summary>A real SIGINT (what Ctrl+C sends) in each stage of a tiny pipeline run as a child process.</summary>
public class CancelTests
{
    [Fact]
    public async Task Ctrl_C_in_every_stage_is_exit_code_130_commits_nothing_of_it_and_the_next_run_completes()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        var store = Path.Combine(cli.Folder, "pipelines", ".finetune");
        // Each point is inside the stage: before its work, or after some of its progress reports. The earlier
        // stages are committed by the run that is interrupted in the next one.
        foreach (var point in new[] { "fetch:start", "format:start", "tokenize:2", "train:6", "evaluate:2",
            "export:start" })
        {
            var stage = point.Split(':')[0];
            var interrupted = await ChildRun.Run(cli.Folder, point + ":INT", "run", "pipelines/tiny.yaml");
            Assert.True(interrupted.ExitCode == 130, point + ": " + interrupted);
            Assert.Contains("cancelled: nothing incomplete was committed", interrupted.Error);
            Assert.False(Directory.Exists(Path.Combine(store, "stages", stage)), point + ": " + interrupted);
            Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store, "tmp")));
            if (stage == "evaluate") // the run that went on after the cancelled training
                Assert.Contains("train: resuming from the checkpoint at step 1", interrupted.Error);
        }
        // Training kept its checkpoint: the next run resumes from it.
        var next = await ChildRun.Run(cli.Folder, null, "run", "pipelines/tiny.yaml");
        Assert.True(next.ExitCode == 0, next.ToString());
        Assert.Contains("Done: 1 stage(s) ran, 5 up to date", next.Out);
    }
}
