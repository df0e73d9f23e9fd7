namespace FineTune.Cli.Tests;

/// <summary>cache verify and cache gc through the CLI, on the stages that need no model.</summary>
public class CacheCommandTests
{
    [Fact]
    public async Task Verify_finds_a_flipped_byte_moves_the_entry_aside_and_the_next_run_recomputes_it()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        var run = await cli.Run("run", "pipelines/tiny.yaml", "--until", "format");
        Assert.True(run.ExitCode == 0, run.Error);
        var train = Directory.GetFiles(Path.Combine(cli.Folder, "pipelines", ".finetune", "stages", "format"),
            "train.jsonl", SearchOption.AllDirectories).Single();
        var bytes = File.ReadAllBytes(train);
        bytes[10] ^= 0x20;
        File.WriteAllBytes(train, bytes);

        var verify = await cli.Run("cache", "verify", "pipelines");
        Assert.Equal(3, verify.ExitCode);
        Assert.Contains("error FT0912: format entry", verify.Error);
        Assert.Contains("train.jsonl no longer matches its sha256", verify.Error);
        Assert.Contains("2 entries checked, 1 damaged", verify.Out);

        var again = await cli.Run("run", "pipelines/tiny.yaml", "--until", "format");
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Contains("format    runs: its output is missing from the store", again.Out + again.Error);
        Assert.Equal(0, (await cli.Run("cache", "verify", "pipelines")).ExitCode);

        // gc removes what verify moved aside, and lists it first under --dry-run.
        var dry = await cli.Run("cache", "gc", "pipelines", "--dry-run");
        Assert.Contains("would remove pipelines/.finetune/damaged/format-", dry.Out);
        var gc = await cli.Run("cache", "gc", "pipelines");
        Assert.Contains("removed pipelines/.finetune/damaged/format-", gc.Out);
    }

    [Fact]
    public async Task Verify_calls_an_entry_without_its_checksum_older_not_damaged_and_the_next_run_recomputes_it()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        Assert.Equal(0, (await cli.Run("run", "pipelines/tiny.yaml", "--until", "fetch")).ExitCode);
        File.Delete(Directory.GetFiles(Path.Combine(cli.Folder, "pipelines", ".finetune", "stages", "fetch"),
            "entry.json.sha256", SearchOption.AllDirectories).Single());

        var verify = await cli.Run("cache", "verify", "pipelines");
        Assert.Equal(0, verify.ExitCode);
        Assert.DoesNotContain("error", verify.Error);
        Assert.Contains("written by an older version of the tool; moved aside, the next run computes it again",
            verify.Out);
        Assert.Contains("1 entries checked, 0 damaged, 1 written by an older version", verify.Out);
        var again = await cli.Run("run", "pipelines/tiny.yaml", "--until", "fetch");
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Contains("fetch     runs: its output is missing from the store", again.Out);
    }

    [Fact]
    public async Task Gc_refuses_when_a_lock_file_has_conflict_markers_and_removes_nothing()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        Assert.Equal(0, (await cli.Run("run", "pipelines/tiny.yaml", "--until", "format")).ExitCode);
        var lockFile = Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml");
        File.WriteAllText(lockFile, "<<<<<<< HEAD\n" + File.ReadAllText(lockFile) + "=======\n>>>>>>> other\n");
        var store = Path.Combine(cli.Folder, "pipelines", ".finetune", "stages");
        var before = Directory.GetFiles(store, "*", SearchOption.AllDirectories).Length;

        var gc = await cli.Run("cache", "gc", "pipelines");
        Assert.Equal(2, gc.ExitCode);
        Assert.Contains("error FT0911: cannot read the lock file", gc.Error);
        Assert.Contains("tiny.lock.yaml", gc.Error);
        Assert.Equal(before, Directory.GetFiles(store, "*", SearchOption.AllDirectories).Length);
    }
}
