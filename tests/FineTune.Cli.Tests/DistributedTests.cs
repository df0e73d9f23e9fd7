using System.Diagnostics;
using System.Text.Json;
using FineTune.TestKit;
using FineTune.Torch.Formats;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>
/// Data-parallel training under a real launcher: <c>mpirun -np 2</c> of the tool's dll (Open MPI; skipped, saying
/// so, where mpirun is not installed).
/// </summary>
public class DistributedTests(ITestOutputHelper output)
{
    private const string Pipeline = """
        name: tiny
        stages:
          fetch: { path: data.json }
          format: { validation: 3 }
          tokenize: { max_length: 64 }
          train:
            builtin: { hidden_size: 32, layers: 1, heads: 2, kv_heads: 1, intermediate_size: 64 }
            epochs: EPOCHS
            batch_size: BATCH
            gradient_accumulation: 2
            learning_rate: 1e-2
            log_every: 1
        """;

    private static string PipelineWith(int batch, int epochs = 2) =>
        Pipeline.Replace("BATCH", batch.ToString()).Replace("EPOCHS", epochs.ToString());

    [Fact]
    public async Task Two_ranks_train_like_one_process_with_the_doubled_batch_and_only_rank_0_writes()
    {
        if (Mpirun() is not { } mpirun) { Skip(); return; }
        using var single = new CliHarness();
        single.Write("pipelines/data.json", EndToEndTests.Dataset());
        single.Write("pipelines/tiny.yaml", PipelineWith(batch: 4));
        var alone = await single.Run("run", "pipelines/tiny.yaml", "--until", "train", "--json");
        Assert.True(alone.ExitCode == 0, alone.Error);

        using var folder = new TempFolder();
        folder.Write("pipelines/data.json", EndToEndTests.Dataset());
        folder.Write("pipelines/tiny.yaml", PipelineWith(batch: 2));
        var ranks = Launch(mpirun, folder.Path, [], "run", "pipelines/tiny.yaml", "--until", "train");
        await ranks.Process.WaitForExitAsync();
        var text = ranks.Output.ToString();
        Assert.True(ranks.Process.ExitCode == 0, text);
        // --tag-output prefixes what each rank writes with [job,rank]: rank 1 prints nothing (but the keypad escape
        // sequence .NET's console writes on start, which ends in no newline, so rank 0's next tag can follow it on
        // the same line).
        Assert.Contains("[1,0]<stdout>:", text);
        Assert.Empty(WrittenBy(text, rank: 1));
        Assert.Contains("data-parallel over 2 ranks (mpi)", text);

        var lockText = File.ReadAllText(Path.Combine(folder.Path, "pipelines", "tiny.lock.yaml"));
        Assert.Contains("device: \"cpu (2 ranks)\"", lockText);
        var store = Path.Combine(folder.Path, "pipelines", ".finetune");
        var trainEntries = Directory.GetDirectories(Path.Combine(store, "stages", "train"));
        Assert.Single(trainEntries);
        Assert.Empty(Directory.Exists(Path.Combine(store, "tmp"))
            ? Directory.GetFileSystemEntries(Path.Combine(store, "tmp")) : []);

        var distributedLosses = Losses(Path.Combine(trainEntries[0], "output", "metrics.jsonl"));
        var aloneTrain = JsonDocument.Parse(alone.Out).RootElement.GetProperty("stages").EnumerateArray()
            .Single(s => s.GetProperty("stage").GetString() == "train").GetProperty("output").GetString()!;
        var singleLosses = Losses(Path.Combine(aloneTrain, "metrics.jsonl"));
        Assert.Equal(singleLosses.Count, distributedLosses.Count);
        for (var i = 0; i < singleLosses.Count; i++) Assert.Equal(singleLosses[i], distributedLosses[i], 1e-3);

        var expected = Safetensors.Load(Path.Combine(aloneTrain, "model", "model.safetensors"));
        var actual = Safetensors.Load(Path.Combine(trainEntries[0], "output", "model", "model.safetensors"));
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, weight) in expected)
        {
            var difference = (weight - actual[name]).abs().max().item<float>();
            Assert.True(difference < 1e-4f, $"{name} differs by {difference}");
        }
    }

    [Theory]
    [InlineData("STOP")]
    [InlineData("KILL")]
    public async Task A_stopped_or_killed_rank_fails_the_run_within_seconds(string signal)
    {
        if (Mpirun() is not { } mpirun) { Skip(); return; }
        using var folder = new TempFolder();
        folder.Write("pipelines/data.json", EndToEndTests.Dataset());
        folder.Write("pipelines/tiny.yaml", PipelineWith(batch: 2, epochs: 2000));
        // Long enough for both ranks to reach the first collective on a loaded machine, short for the test.
        var ranks = Launch(mpirun, folder.Path, [("FINETUNE_COLLECTIVE_TIMEOUT", "10")],
            "run", "pipelines/tiny.yaml", "--until", "train");
        try
        {
            // Once training has taken steps, rank 1 stops answering.
            var started = Stopwatch.StartNew();
            while (!ranks.Output.ToString().Contains("steps  loss") && started.Elapsed < TimeSpan.FromMinutes(2))
            {
                Assert.False(ranks.Process.HasExited, ranks.Output.ToString());
                await Task.Delay(100);
            }
            var rank1 = RankProcess(ranks.Process.Id, rank: 1);
            Assert.True(rank1 > 0, "rank 1's process not found");
            Process.Start("kill", ["-" + signal, rank1.ToString()])!.WaitForExit();
            var clock = Stopwatch.StartNew();
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await ranks.Process.WaitForExitAsync(limit.Token);
            output.WriteLine($"{signal}: the launch ended {clock.Elapsed.TotalSeconds:F1} s later");
            Assert.NotEqual(0, ranks.Process.ExitCode);
            if (signal == "STOP")
                Assert.Contains("FT1102", ranks.Output.ToString());
        }
        finally
        {
            if (!ranks.Process.HasExited) ranks.Process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>The non-blank pieces of <paramref name="text"/> that follow a <c>[job,rank]&lt;stream&gt;:</c> tag of
    /// <paramref name="rank"/>, each up to the next tag or the end of its line.</summary>
    private static List<string> WrittenBy(string text, int rank)
    {
        var pieces = new List<string>();
        foreach (var line in text.Split('\n'))
        {
            var tags = System.Text.RegularExpressions.Regex.Matches(line, @"\[\d+,(\d+)\]<std(?:out|err)>:");
            for (var i = 0; i < tags.Count; i++)
            {
                if (tags[i].Groups[1].Value != rank.ToString()) continue;
                var start = tags[i].Index + tags[i].Length;
                var end = i + 1 < tags.Count ? tags[i + 1].Index : line.Length;
                var piece = line[start..end].Replace("\u001b[?1h\u001b=", "").Trim();
                if (piece.Length > 0) pieces.Add(piece);
            }
        }
        return pieces;
    }

    private static List<double> Losses(string metrics) => [.. File.ReadAllLines(metrics)
        .Select(line => JsonDocument.Parse(line).RootElement.GetProperty("loss").GetDouble())];

    private void Skip() => output.WriteLine("skipped: mpirun (Open MPI) is not installed; .ci/run installs it with " +
        "apt-get install openmpi-bin libopenmpi-dev");

    private static string? Mpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    private sealed record Launched(Process Process, System.Text.StringBuilder Output);

    private static Launched Launch(string mpirun, string folder, (string Name, string Value)[] variables,
        params string[] args)
    {
        var tool = Path.Combine(AppContext.BaseDirectory, "dotnet-finetune.dll");
        var info = new ProcessStartInfo(mpirun)
        {
            WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var arg in (string[])["--allow-run-as-root", "--oversubscribe", "--tag-output", "-np", "2",
            Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet", tool, .. args])
            info.ArgumentList.Add(arg);
        // Containers lack the kernel support for Open MPI's default single-copy shared memory.
        info.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
        foreach (var (name, value) in variables) info.Environment[name] = value;
        var process = new Process { StartInfo = info };
        var text = new System.Text.StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (text) text.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new Launched(process, text);
    }

    /// <summary>The process under mpirun whose environment says it is <paramref name="rank"/>.</summary>
    private static int RankProcess(int mpirun, int rank)
    {
        foreach (var directory in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid) || pid == mpirun) continue;
            try
            {
                var environment = File.ReadAllText(Path.Combine(directory, "environ")).Split('\0');
                if (environment.Contains($"OMPI_COMM_WORLD_RANK={rank}") && IsDescendant(pid, mpirun)) return pid;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return 0;
    }

    private static bool IsDescendant(int pid, int ancestor)
    {
        for (var current = pid; current > 1;)
        {
            var stat = File.ReadAllText($"/proc/{current}/stat");
            // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
            current = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
            if (current == ancestor) return true;
        }
        return false;
    }
}
