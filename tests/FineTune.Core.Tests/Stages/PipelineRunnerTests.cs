using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Stages;

public class PipelineRunnerTests
{
    private sealed class Observer : IRunObserver
    {
        public readonly List<string> Lines = [];
        public void Notice(string message) => Lines.Add("notice " + message);
        public void StageUpToDate(StageOutcome outcome) => Lines.Add($"{outcome.Stage} up to date");
        public void StageStarting(string stage, IReadOnlyList<string> reasons) => Lines.Add($"{stage} runs: {string.Join("; ", reasons)}");
        public IStageLog LogFor(string stage) => new RecordingLog();
        public void StageFinished(StageOutcome outcome) { }
    }

    // Three fake stages format -> evaluate -> export over their real settings sections. evaluate's output depends only on its own settings, so a change
    // upstream re-runs evaluate but, its output being the same bytes, leaves export up to date.
    private sealed class Fixture : IDisposable
    {
        public readonly TempFolder Folder = new();
        public readonly RecordingStage<FormatSettings> A = new("format", []);
        public readonly RecordingStage<EvaluateSettings> B = new("evaluate", ["format"], outputIgnoresInputs: true);
        public readonly RecordingStage<ExportSettings> C = new("export", ["evaluate"]);
        public readonly string PipelinePath;

        public Fixture() => PipelinePath = Folder.Write("p.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  format: { seed: 1 }\n");

        public async Task<(IReadOnlyList<StageOutcome> Outcomes, Observer Observer)> Run(RunOptions? options = null, params string[] sets)
        {
            var observer = new Observer();
            var runner = new PipelineRunner([A, B, C], "test");
            var outcomes = await runner.RunAsync(PipelineLoader.LoadOrThrow(PipelinePath, sets), options ?? new RunOptions(), observer, CancellationToken.None);
            return (outcomes, observer);
        }

        public string LockText => File.ReadAllText(Path.Combine(Folder.Path, "p.lock.yaml"));

        public void Dispose() => Folder.Dispose();
    }

    [Fact]
    public async Task Second_run_of_an_unchanged_pipeline_runs_nothing()
    {
        using var f = new Fixture();
        var (first, _) = await f.Run();
        Assert.All(first, o => Assert.Equal(StageStatus.Ran, o.Status));
        var lockAfterFirst = f.LockText;

        var (second, observer) = await f.Run();
        Assert.All(second, o => Assert.Equal(StageStatus.UpToDate, o.Status));
        Assert.Equal((1, 1, 1), (f.A.Runs, f.B.Runs, f.C.Runs));
        Assert.Equal(["format up to date", "evaluate up to date", "export up to date"], observer.Lines);
        Assert.Equal(lockAfterFirst, f.LockText);
    }

    [Fact]
    public async Task A_changed_setting_reruns_that_stage_and_says_why_and_downstream_only_if_its_input_changed()
    {
        using var f = new Fixture();
        await f.Run();

        var (_, observer) = await f.Run(null, "format.seed=2");
        Assert.Contains("format runs: settings changed: seed 1 -> 2", observer.Lines);
        Assert.Contains("evaluate runs: input changed: format output", observer.Lines);
        Assert.Contains("export up to date", observer.Lines); // evaluate's output is the same bytes as before
        Assert.Equal((2, 2, 1), (f.A.Runs, f.B.Runs, f.C.Runs));

        (_, observer) = await f.Run(null, "format.seed=2", "evaluate.max_new_tokens=7");
        Assert.Equal(["format up to date", "evaluate runs: settings changed: max_new_tokens 64 -> 7", "export runs: input changed: evaluate output"], observer.Lines);
    }

    [Fact]
    public async Task Reverting_a_setting_restores_the_earlier_output_from_the_store_without_running()
    {
        using var f = new Fixture();
        await f.Run();
        await f.Run(null, "format.seed=2");
        var (outcomes, _) = await f.Run();
        Assert.Equal(StageStatus.Restored, outcomes[0].Status);
        Assert.Equal(2, f.A.Runs);
    }

    [Fact]
    public async Task Keys_depend_on_content_not_on_the_folder_or_timestamps()
    {
        using var f = new Fixture();
        var (first, _) = await f.Run();
        using var elsewhere = new Fixture();
        File.SetLastWriteTimeUtc(elsewhere.PipelinePath, DateTime.UtcNow.AddDays(-3));
        var (second, _) = await elsewhere.Run();
        Assert.Equal(first.Select(o => o.Entry!.Key), second.Select(o => o.Entry!.Key));
    }

    [Fact]
    public async Task A_new_implementation_version_reruns_the_stage()
    {
        using var f = new Fixture();
        await f.Run();
        f.C.Version = 2;
        var (_, observer) = await f.Run();
        Assert.Contains("export runs: stage implementation changed (version 1 -> 2)", observer.Lines);
    }

    [Fact]
    public async Task A_failing_stage_commits_nothing_and_leaves_the_lock_file_as_it_was()
    {
        using var f = new Fixture();
        await f.Run();
        var lockBefore = f.LockText;
        f.B.Behaviour = (context, _) =>
        {
            File.WriteAllText(Path.Combine(context.OutputDirectory, "half.txt"), "partial");
            throw new InvalidOperationException("boom");
        };

        var failure = await Assert.ThrowsAsync<StageFailedException>(() => f.Run(null, "evaluate.max_new_tokens=9"));
        Assert.Equal("evaluate", failure.Stage);
        Assert.Equal(lockBefore, f.LockText);
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        Assert.Equal(3, store.Entries().Count());
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store.Root, "tmp")));
    }

    [Fact]
    public async Task Cancelling_keeps_the_work_folder_and_commits_nothing()
    {
        using var f = new Fixture();
        string? work = null;
        f.B.Behaviour = (context, token) =>
        {
            work = context.WorkDirectory;
            File.WriteAllText(Path.Combine(work, "checkpoint.bin"), "state");
            throw new OperationCanceledException(token);
        };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => f.Run());
        Assert.True(File.Exists(Path.Combine(work!, "checkpoint.bin")));
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        Assert.Equal(["format"], store.Entries().Select(e => e.Stage));
        Assert.Contains("  format:", f.LockText);
        Assert.DoesNotContain("  evaluate:", f.LockText);
    }

    [Fact]
    public async Task Until_only_and_force_select_stages()
    {
        using var f = new Fixture();
        var (until, _) = await f.Run(new RunOptions { Until = "evaluate" });
        Assert.Equal(["format", "evaluate"], until.Select(o => o.Stage));

        var (only, _) = await f.Run(new RunOptions { Only = "export" });
        Assert.Equal([StageStatus.UpToDate, StageStatus.UpToDate, StageStatus.Ran], only.Select(o => o.Status));

        await f.Run(new RunOptions { ForceStage = "evaluate" });
        Assert.Equal((1, 2, 1), (f.A.Runs, f.B.Runs, f.C.Runs));

        await f.Run(new RunOptions { ForceAll = true });
        Assert.Equal((2, 3, 2), (f.A.Runs, f.B.Runs, f.C.Runs));

        var error = await Assert.ThrowsAsync<FineTuneException>(() => f.Run(new RunOptions { Only = "export" }, "format.seed=5"));
        Assert.Equal("FT0902", error.Diagnostics[0].Code);
        await Assert.ThrowsAsync<FineTuneException>(() => f.Run(new RunOptions { Until = "nope" }));
    }

    [Fact]
    public async Task Status_reports_without_running_or_writing()
    {
        using var f = new Fixture();
        await f.Run();
        var lockBefore = f.LockText;
        var (outcomes, observer) = await f.Run(new RunOptions { DryRun = true }, "format.seed=3");
        Assert.Equal([StageStatus.WillRun, StageStatus.WillRun, StageStatus.WillRun], outcomes.Select(o => o.Status));
        Assert.Equal("format runs: settings changed: seed 1 -> 3", observer.Lines[0]);
        Assert.Equal((1, 1, 1), (f.A.Runs, f.B.Runs, f.C.Runs));
        Assert.Equal(lockBefore, f.LockText);
    }

    [Fact]
    public async Task A_second_run_on_the_same_store_refuses_clearly_when_asked_not_to_wait()
    {
        using var f = new Fixture();
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        using (store.AcquireRunLock(wait: false, _ => { }, CancellationToken.None))
        {
            var error = await Assert.ThrowsAsync<FineTuneException>(() => f.Run(new RunOptions { WaitForLock = false }));
            Assert.Equal("FT0901", error.Diagnostics[0].Code);
        }
        await f.Run(new RunOptions { WaitForLock = false });
        Assert.Equal(1, f.A.Runs);
    }

    [Fact]
    public async Task A_store_folder_that_already_holds_other_files_is_refused_and_left_untouched()
    {
        using var f = new Fixture();
        var precious = f.Folder.Write("mine/tmp/x/keep.txt", "mine");
        File.AppendAllText(f.PipelinePath, "store: mine\n");
        var error = await Assert.ThrowsAsync<FineTuneException>(() => f.Run());
        Assert.Equal(DiagnosticCodes.NotAStore, error.Diagnostics[0].Code);
        Assert.Equal(5, error.Diagnostics[0].Line); // at the store: setting
        Assert.True(File.Exists(precious));
        Assert.Equal(0, f.A.Runs);
        Assert.False(File.Exists(Path.Combine(f.Folder.Path, "mine", StageStore.MarkerFile)));

        // Deleting directly in such a folder is refused too (gc, leftovers).
        var store = new StageStore(Path.Combine(f.Folder.Path, "mine"));
        Assert.Throws<FineTuneException>(() => store.RemoveTemporaryLeftovers());
        Assert.Throws<FineTuneException>(() => StoreGarbageCollector.Collect(store, [], dryRun: false, checkpoints: true));
        Assert.True(File.Exists(precious));
    }

    [Fact]
    public async Task A_new_store_gets_its_marker_and_an_older_store_is_adopted()
    {
        using var f = new Fixture();
        await f.Run();
        var root = Path.Combine(f.Folder.Path, ".finetune");
        Assert.True(File.Exists(Path.Combine(root, StageStore.MarkerFile)));

        File.Delete(Path.Combine(root, StageStore.MarkerFile)); // as a store from before the marker looks
        var (outcomes, _) = await f.Run();
        Assert.All(outcomes, o => Assert.Equal(StageStatus.UpToDate, o.Status));
        Assert.True(File.Exists(Path.Combine(root, StageStore.MarkerFile)));
    }

    [Theory]
    [InlineData("schema: 1\nstages:\n<<<<<<< HEAD\n  format:\n    key: a\n=======\n  format:\n    key: b\n>>>>>>> x\n")]
    [InlineData("schema: 1\nstages: [1, 2]\n")]
    [InlineData("schema: 1\nstages:\n  format:\n    implementation: 1\n")]
    public async Task Garbage_collection_refuses_when_a_lock_file_cannot_be_read_and_removes_nothing(string damaged)
    {
        using var f = new Fixture();
        await f.Run();
        await f.Run(null, "format.seed=2");
        var other = f.Folder.Write("other.lock.yaml", damaged);
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        var before = Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories).Length;

        var error = Assert.Throws<FineTuneException>(() => StoreGarbageCollector.Collect(store,
            [Path.Combine(f.Folder.Path, "p.lock.yaml"), other], dryRun: false));
        Assert.Equal(DiagnosticCodes.UnreadableLockFile, error.Diagnostics[0].Code);
        Assert.Contains(other, error.Message);
        Assert.Equal(before, Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public async Task Garbage_collection_keeps_checkpoints_unless_asked_and_a_dry_run_lists_exactly_what_goes()
    {
        using var f = new Fixture();
        await f.Run();
        await f.Run(null, "format.seed=2");
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        var checkpoint = f.Folder.Write(".finetune/work/train-0123456789abcdef/checkpoint/state.json", "{}");
        var leftover = f.Folder.Write(".finetune/tmp/1-abc/output/x", "x");
        string[] locks = [Path.Combine(f.Folder.Path, "p.lock.yaml")];
        string[] Present() => [.. Directory.GetFileSystemEntries(store.Root, "*", SearchOption.AllDirectories).Order()];

        var before = Present();
        var dry = StoreGarbageCollector.Collect(store, locks, dryRun: true);
        Assert.Equal(before, Present());
        Assert.Equal(3, dry.Removed.Count); // the two superseded entries and tmp/; not work/
        var real = StoreGarbageCollector.Collect(store, locks, dryRun: false);
        Assert.Equal(dry.Removed, real.Removed);
        Assert.Equal(before.Where(p => !dry.Removed.Any(r => p == r || p.StartsWith(r + Path.DirectorySeparatorChar))), Present());
        Assert.True(File.Exists(checkpoint));
        Assert.False(File.Exists(leftover));

        var withCheckpoints = StoreGarbageCollector.Collect(store, locks, dryRun: false, checkpoints: true);
        Assert.Equal([Path.GetDirectoryName(Path.GetDirectoryName(checkpoint))!], withCheckpoints.Removed);
        Assert.False(File.Exists(checkpoint));
    }

    // Each kind of store file, damaged each way: whether a size check on reuse finds it (else only --verify does).
    [Theory]
    [InlineData("output/out.txt", "flip", false)]
    [InlineData("output/out.txt", "truncate", true)]
    [InlineData("output/out.txt", "delete", true)]
    [InlineData("output/out.txt", "append", true)]
    [InlineData("output/extra.txt", "create", true)]
    [InlineData("entry.json", "flip", true)]
    [InlineData("entry.json", "truncate", true)]
    [InlineData("entry.json", "delete", true)]
    [InlineData("entry.json", "outputs", true)]
    [InlineData("entry.json.sha256", "flip", true)]
    [InlineData("entry.json.sha256", "delete", true)]
    public async Task A_damaged_store_entry_is_reported_moved_aside_and_computed_again(string file, string how,
        bool foundBySize)
    {
        using var f = new Fixture();
        var (first, _) = await f.Run();
        var entry = Path.GetDirectoryName(first[1].OutputDirectory)!; // evaluate's
        var expected = File.ReadAllText(Path.Combine(entry, "output", "out.txt"));
        var path = Path.Combine(entry, file);
        var bytes = File.Exists(path) ? File.ReadAllBytes(path) : [];
        switch (how)
        {
            case "flip": bytes[bytes.Length / 2] ^= 0x01; File.WriteAllBytes(path, bytes); break;
            case "truncate": File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]); break;
            case "delete": File.Delete(path); break;
            case "append": File.AppendAllText(path, "x"); break;
            case "create": File.WriteAllText(path, "x"); break;
            case "outputs": File.WriteAllText(path, File.ReadAllText(path).Replace("\"size\": ", "\"size\": 1")); break;
        }

        var (plain, observer) = await f.Run();
        if (!foundBySize)
        {
            Assert.All(plain, o => Assert.Equal(StageStatus.UpToDate, o.Status));
            (plain, observer) = await f.Run(new RunOptions { Verify = true });
        }
        Assert.Equal(StageStatus.Ran, plain[1].Status);
        // Versions before entry.json.sha256 wrote none: such an entry is computed again without calling it damaged.
        var notice = file == "entry.json.sha256" && how == "delete"
            ? "notice evaluate: the stored output was written by an older version of the tool; it is computed again"
            : "notice evaluate: the stored output is damaged";
        Assert.Contains(observer.Lines, l => l.StartsWith(notice, StringComparison.Ordinal));
        Assert.Equal(expected, File.ReadAllText(Path.Combine(entry, "output", "out.txt")));
        Assert.Single(Directory.GetDirectories(Path.Combine(f.Folder.Path, ".finetune", "damaged")));
        var (after, _) = await f.Run(new RunOptions { Verify = true });
        Assert.All(after, o => Assert.Equal(StageStatus.UpToDate, o.Status));
    }

    public static TheoryData<string, int, string> HostileLockFiles()
    {
        var laughs = "schema: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + string.Concat(Enumerable.Range(1, 9)
            .Select(i => $"a{i}: &a{i} [{string.Join(", ", Enumerable.Repeat($"*a{i - 1}", 10))}]\n"));
        var deep = "schema: 1\nstages:\n" + string.Concat(Enumerable.Range(1, 40).Select(i => new string(' ', 2 * i) + $"k{i}:\n"));
        return new()
        {
            { laughs, 2, "a YAML anchor" },
            { "schema: 1\nstages: *nowhere\n", 2, "a YAML alias" },
            { deep, 18, "nesting deeper than 16 levels" },
        };
    }

    [Theory]
    [MemberData(nameof(HostileLockFiles))]
    public async Task A_lock_file_with_aliases_or_deep_nesting_is_refused_at_its_place(string text, int line, string what)
    {
        using var f = new Fixture();
        var lockPath = f.Folder.Write("p.lock.yaml", text);
        var error = await Assert.ThrowsAsync<FineTuneException>(() => f.Run());
        Assert.Equal(DiagnosticCodes.LockFileStructureRefused, error.Diagnostics[0].Code);
        Assert.Equal((lockPath, line), (error.Diagnostics[0].File, error.Diagnostics[0].Line));
        Assert.Contains(what, error.Message);
        Assert.Equal(0, f.A.Runs);
        Assert.Equal(text, File.ReadAllText(lockPath));
    }

    [Fact]
    public async Task Garbage_collection_keeps_what_lock_files_refer_to()
    {
        using var f = new Fixture();
        await f.Run();
        await f.Run(null, "format.seed=2"); // format and evaluate get second entries; the lock now refers to those
        var store = new StageStore(Path.Combine(f.Folder.Path, ".finetune"));
        Assert.Equal(5, store.Entries().Count());

        var result = StoreGarbageCollector.Collect(store, [Path.Combine(f.Folder.Path, "p.lock.yaml")], dryRun: false);
        Assert.Equal(3, result.Kept);
        Assert.Equal(3, store.Entries().Count());
        var (outcomes, _) = await f.Run(null, "format.seed=2");
        Assert.All(outcomes, o => Assert.Equal(StageStatus.UpToDate, o.Status));
    }

    [Fact]
    public async Task What_a_stage_read_is_keyed_by_content_and_recorded_with_its_origin()
    {
        using var f = new Fixture();
        var data = f.Folder.Write("data/x.txt", "one");
        var snapshot = f.Folder.Write("hub/snapshots/0123abc/config.json", "{}");
        f.A.Inputs = _ => [StageInput.File("x", data), StageInput.File("model/config.json", snapshot, hubCommit: "0123abc")];
        var (first, _) = await f.Run();
        Assert.Contains($"      x: {{sha256: {ContentHash.OfText("one")}, size: 3, path: \"data/x.txt\"}}", f.LockText);
        Assert.Contains($"      model/config.json: {{sha256: {ContentHash.OfText("{}")}, size: 2, commit: \"0123abc\"}}", f.LockText);
        Assert.Equal([StageInputKind.LocalFile, StageInputKind.HubFile], first[0].Inputs.Select(i => i.Kind));

        File.SetLastWriteTimeUtc(data, DateTime.UtcNow.AddDays(1));
        var (_, touched) = await f.Run();
        Assert.Contains("format up to date", touched.Lines);

        File.WriteAllText(data, "two");
        var (_, changed) = await f.Run();
        Assert.Contains("format runs: input changed: x", changed.Lines);
    }
}
