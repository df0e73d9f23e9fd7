using Xunit.Abstractions;

namespace FineTune.Cli.Tests.Faults;

/// <summary>
/// kill -9 at ten points spread over every stage of a seeded tiny pipeline: each time the next run completes, and
/// its lock file and exported model are byte-identical to those of a run that was never interrupted.
/// </summary>
public class KillTests(ITestOutputHelper output)
{
    internal const string Pipeline = """
        name: tiny
        stages:
          fetch: { path: data.json }
          format: { validation: 3 }
          tokenize: { max_length: 64 }
          train:
            builtin: { hidden_size: 32, layers: 1, heads: 2, kv_heads: 1, intermediate_size: 64 }
            epochs: 2
            batch_size: 4
            gradient_accumulation: 1
            learning_rate: 1e-2
            checkpoint_every: 2
            log_every: 1
          evaluate:
            prompts: ["你是谁？"]
            max_new_tokens: 4
            sample: 2
            compare_base: false
        """;

    private static readonly string[] Stages = ["fetch", "format", "tokenize", "train", "evaluate", "export"];

    // STAGE:POINT as FINETUNE_TEST_SIGNAL_AT reads it. Train reports 5 plan lines, then one line per step (8 steps,
    // a checkpoint after steps 2, 4 and 6): event 7 is step 2 before its checkpoint, 8 is step 3 (resumes from 2),
    // 12 is step 7 (resumes from 6). export:1 comes after every file is written, just before the commit.
    private static readonly string[] Points = ["fetch:start", "format:1", "tokenize:10", "train:7", "train:8",
        "train:12", "train:done", "evaluate:2", "export:start", "export:1"];

    private static readonly Dictionary<string, int> Resumes = new() { ["train:8"] = 2, ["train:12"] = 6 };

    [Fact]
    public async Task After_a_kill_at_each_of_ten_points_the_next_run_gives_the_uninterrupted_runs_bytes()
    {
        using var reference = NewFolder();
        var first = await reference.Run("run", "pipelines/tiny.yaml");
        Assert.True(first.ExitCode == 0, first.Error + first.Out);
        var referenceLock = File.ReadAllText(LockOf(reference));
        var referenceModel = File.ReadAllBytes(ExportedModel(reference));

        var survived = 0;
        foreach (var point in Points)
        {
            using var cli = NewFolder();
            // The stages before the one killed come from the reference run, as an earlier run would have left them.
            var stage = point.Split(':')[0];
            var store = Path.Combine(reference.Folder, "pipelines", ".finetune");
            var copy = Path.Combine(cli.Folder, "pipelines", ".finetune");
            Directory.CreateDirectory(copy);
            File.Copy(Path.Combine(store, ".finetune-store"), Path.Combine(copy, ".finetune-store"));
            foreach (var earlier in Stages.TakeWhile(s => s != stage))
                CopyTree(Path.Combine(store, "stages", earlier), Path.Combine(copy, "stages", earlier));

            var killed = await ChildRun.Run(cli.Folder, point + ":KILL", "run", "pipelines/tiny.yaml");
            Assert.True(killed.ExitCode == 137, point + ": " + killed); // 128 + SIGKILL: it died at the point

            var next = await cli.Run("run", "pipelines/tiny.yaml");
            Assert.True(next.ExitCode == 0, point + ": " + next.Error + next.Out);
            if (Resumes.TryGetValue(point, out var step))
                Assert.Contains($"train: resuming from the checkpoint at step {step}", next.Error);
            Assert.Equal(referenceLock, File.ReadAllText(LockOf(cli)));
            Assert.Equal(referenceModel, File.ReadAllBytes(ExportedModel(cli)));
            survived++;
        }
        output.WriteLine($"kill -9 points survived: {survived} of {Points.Length} ({string.Join(", ", Points)})");
        Assert.Equal(10, survived);
    }

    private static CliHarness NewFolder()
    {
        var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", Pipeline);
        return cli;
    }

    private static string LockOf(CliHarness cli) => Path.Combine(cli.Folder, "pipelines", "tiny.lock.yaml");

    private static string ExportedModel(CliHarness cli) => Directory.GetFiles(
        Path.Combine(cli.Folder, "pipelines", ".finetune", "stages", "export"), "model.safetensors",
        SearchOption.AllDirectories).Single();

    internal static void CopyTree(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
