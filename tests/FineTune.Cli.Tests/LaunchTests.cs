using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace FineTune.Cli.Tests;

/// <summary>
/// <c>launch</c> job files against their formats: sbatch reads <c>#SBATCH</c> directives only before the first
/// command (sbatch(1)); a Kubernetes batch/v1 Job whose env values are strings (the API refuses numbers there).
/// </summary>
public class LaunchTests
{
    [Fact]
    public async Task Slurm_script_asks_for_one_task_per_rank_and_runs_the_pipeline_with_srun()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        var result = await cli.Run("launch", "pipelines/tiny.yaml", "--slurm", "-n", "4", "--nodes", "2",
            "--set", "train.epochs=3");
        Assert.True(result.ExitCode == 0, result.Error);
        var path = result.Out.Trim();
        Assert.Equal(Path.Combine(cli.Folder, "pipelines", "finetune-tiny.sbatch"), path);
        var lines = File.ReadAllLines(path);
        Assert.Equal("#!/bin/bash", lines[0]);
        var firstCommand = Array.FindIndex(lines, l => l.Length > 0 && !l.StartsWith('#'));
        var directives = lines.Take(firstCommand).Where(l => l.StartsWith("#SBATCH ", StringComparison.Ordinal))
            .Select(l => l["#SBATCH ".Length..]).ToList();
        Assert.Contains("--ntasks=4", directives);
        Assert.Contains("--nodes=2", directives);
        Assert.Contains("--job-name=finetune-tiny", directives);
        Assert.DoesNotContain(lines.Skip(firstCommand), l => l.StartsWith("#SBATCH", StringComparison.Ordinal));
        Assert.Contains($"cd {Path.Combine(cli.Folder, "pipelines")}", lines);
        Assert.Contains(lines, l => l.StartsWith("srun ", StringComparison.Ordinal)
            && l.EndsWith(" dotnet finetune run tiny.yaml --set train.epochs=3", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Kubernetes_job_runs_the_ranks_with_mpirun_on_the_claim()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        var result = await cli.Run("launch", "pipelines/tiny.yaml", "--k8s", "-n", "3", "--cpus-per-rank", "2",
            "-o", "job.yaml");
        Assert.True(result.ExitCode == 0, result.Error);
        var stream = new YamlStream();
        stream.Load(new StringReader(File.ReadAllText(Path.Combine(cli.Folder, "job.yaml"))));
        var job = (YamlMappingNode)stream.Documents.Single().RootNode;
        Assert.Equal("batch/v1", Scalar(job, "apiVersion"));
        Assert.Equal("Job", Scalar(job, "kind"));
        Assert.Equal("finetune-tiny", Scalar(Map(job, "metadata"), "name"));
        var pod = Map(Map(Map(job, "spec"), "template"), "spec");
        Assert.Equal("Never", Scalar(pod, "restartPolicy"));
        var container = (YamlMappingNode)((YamlSequenceNode)pod["containers"]).Single();
        var command = ((YamlSequenceNode)container["command"]).Select(n => ((YamlScalarNode)n).Value).ToList();
        Assert.Contains("mpirun --allow-run-as-root -np 3 dotnet finetune run tiny.yaml", command[^1]);
        Assert.Equal("6", Scalar(Map(Map(container, "resources"), "requests"), "cpu"));
        foreach (var variable in ((YamlSequenceNode)container["env"]).Cast<YamlMappingNode>())
        {
            var value = (YamlScalarNode)variable["value"];
            // A plain 2 would be a number; the Job must carry the string "2".
            Assert.True(value.Style != ScalarStyle.Plain || !double.TryParse(value.Value, out _), value.Value);
        }
        var mount = ((YamlSequenceNode)container["volumeMounts"]).Cast<YamlMappingNode>().Single();
        var volume = ((YamlSequenceNode)pod["volumes"]).Cast<YamlMappingNode>().Single();
        Assert.Equal(Scalar(mount, "name"), Scalar(volume, "name"));
        Assert.Equal("finetune-work", Scalar(Map(volume, "persistentVolumeClaim"), "claimName"));
        Assert.StartsWith(Scalar(mount, "mountPath"), Scalar(container, "workingDir"));
    }

    [Fact]
    public async Task A_pipeline_that_is_not_distributed_or_two_targets_are_refused()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        var both = await cli.Run("launch", "pipelines/tiny.yaml", "--slurm", "--k8s");
        Assert.Equal(2, both.ExitCode);
        var off = await cli.Run("launch", "pipelines/tiny.yaml", "--slurm", "--set", "train.distributed=off");
        Assert.Equal(2, off.ExitCode);
        Assert.Contains("FT1106", off.Error);
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node[key];
    private static string Scalar(YamlMappingNode node, string key) => ((YamlScalarNode)node[key]).Value!;
}
