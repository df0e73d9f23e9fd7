using FineTune.TestKit;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests.Faults;

/// <summary>A run whose store is on a real 4 MB filesystem: the data stages fit, the trained model does not.</summary>
public class DiskFullTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_full_disk_is_exit_code_3_with_the_path_and_leaves_the_store_consistent()
    {
        using var small = SmallFilesystem.TryMount(4096, out var whyNot);
        if (small is null) { output.WriteLine($"skipped: {whyNot}"); return; }
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        var store = Path.Combine(small.Path, "store");
        cli.Write("pipelines/tiny.yaml", $"store: {store}\n" + EndToEndTests.Pipeline);

        var full = await cli.Run("run", "pipelines/tiny.yaml");
        output.WriteLine(full.Error);
        Assert.Equal(3, full.ExitCode);
        Assert.Contains($"error FT0916: disk full at {store} (needed about ", full.Error);
        Assert.Contains("No space left on device", full.Error);
        Assert.DoesNotContain("internal error", full.Error);
        // Nothing half-written: tmp/ is empty, train has no entry, and what was committed before still verifies.
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store, "tmp")));
        Assert.False(Directory.Exists(Path.Combine(store, "stages", "train")));
        var verify = await cli.Run("cache", "verify", "pipelines/tiny.yaml");
        Assert.True(verify.ExitCode == 0, verify.Error + verify.Out);
        Assert.Contains("3 entries checked, 0 damaged", verify.Out);
        var locked = File.ReadAllText(Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml"));
        Assert.DoesNotContain("\n  train:\n", locked);
        Assert.Contains("\n  tokenize:\n", locked);

        // The same store moved to a disk with room: the data stages are reused and the rest runs.
        var roomy = Path.Combine(cli.Folder, "roomy");
        KillTests.CopyTree(store, roomy);
        small.Dispose();
        cli.Write("pipelines/tiny.yaml", $"store: {roomy}\n" + EndToEndTests.Pipeline);
        var next = await cli.Run("run", "pipelines/tiny.yaml", "--verify");
        Assert.True(next.ExitCode == 0, next.Error + next.Out);
        Assert.Contains("Done: 3 stage(s) ran, 3 up to date", next.Out);
    }
}
