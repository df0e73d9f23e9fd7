using System.CommandLine;
using FineTune.Core.Diagnostics;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>launch</c>: writes the job file that runs a pipeline data-parallel on a cluster (an sbatch script or a
/// Kubernetes Job); submitting it is the user's step.
/// </summary>
internal static class LaunchCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("launch", "Write a job file that runs the pipeline data-parallel on a cluster: " +
            "an sbatch script (--slurm) or a Kubernetes Job manifest (--k8s). See docs/distributed.md.");
        var file = PipelineOptions.File();
        var set = PipelineOptions.Set();
        var slurm = new Option<bool>("--slurm") { Description = "Write a Slurm batch script (<job>.sbatch)." };
        var k8s = new Option<bool>("--k8s") { Description = "Write a Kubernetes Job manifest (<job>.job.yaml)." };
        var ranks = new Option<int>("--ranks", "-n")
        {
            Description = "Processes that train together (one per GPU, or per CPU socket).",
            DefaultValueFactory = _ => 2,
        };
        var nodes = new Option<int>("--nodes") { Description = "Slurm: nodes to spread the ranks over.",
            DefaultValueFactory = _ => 1 };
        var cpus = new Option<int>("--cpus-per-rank") { Description = "CPU cores (libtorch threads) per rank.",
            DefaultValueFactory = _ => 1 };
        var image = new Option<string?>("--image")
        {
            Description = "Kubernetes: a container image with the .NET SDK, Open MPI and the tool (default: the .NET " +
                "SDK image, installing Open MPI and restoring the tool when the pod starts).",
        };
        var volume = new Option<string>("--volume") { Description = "Kubernetes: the persistent volume claim that " +
            "holds the repository.", DefaultValueFactory = _ => "finetune-work" };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Where to write the job file " +
            "(default: beside the pipeline)." };
        command.Arguments.Add(file);
        foreach (var option in new Option[] { slurm, k8s, ranks, nodes, cpus, image, volume, output, set })
            command.Options.Add(option);
        command.Validators.Add(result =>
        {
            if (result.GetValue(slurm) == result.GetValue(k8s))
                result.AddError("choose one of --slurm and --k8s");
        });

        command.SetAction(parse =>
        {
            var pipeline = PipelineOptions.Load(console, parse.GetValue(file)!, parse.GetValue(set));
            if (pipeline is null) return ExitCodes.InvalidInput;
            var job = new JobRequest(pipeline.Name, pipeline.Directory, Path.GetFileName(pipeline.FilePath),
                parse.GetValue(ranks), parse.GetValue(nodes), parse.GetValue(cpus), parse.GetValue(set) ?? [],
                parse.GetValue(image), parse.GetValue(volume)!, InRepository(pipeline.Directory));
            if (pipeline.Stages.Train.Distributed == "off")
                throw new FineTuneException(DiagnosticCodes.LaunchOptionsInvalid,
                    $"{pipeline.FilePath} sets train.distributed: off, so its ranks would not train together; " +
                    "remove it (or --set train.distributed=auto)");
            if (job.Ranks < 1 || job.Nodes < 1 || job.CpusPerRank < 1)
                throw new FineTuneException(DiagnosticCodes.LaunchOptionsInvalid,
                    "--ranks, --nodes and --cpus-per-rank must be 1 or more");
            if (job.Nodes > job.Ranks)
                throw new FineTuneException(DiagnosticCodes.LaunchOptionsInvalid,
                    $"--nodes {job.Nodes} is more than --ranks {job.Ranks}: some nodes would hold no rank");
            var isSlurm = parse.GetValue(slurm);
            var text = isSlurm ? JobFiles.Slurm(job) : JobFiles.Kubernetes(job);
            var path = parse.GetValue(output)?.FullName
                ?? Path.Combine(pipeline.Directory, JobFiles.Job(job) + (isSlurm ? ".sbatch" : ".job.yaml"));
            File.WriteAllText(path, text);
            console.Out.WriteLine(path);
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The pipeline folder relative to its git repository's root ("." when it is the root or in none).
    /// </summary>
    private static string InRepository(string directory)
    {
        for (var folder = new DirectoryInfo(directory); folder is not null; folder = folder.Parent)
            if (Directory.Exists(Path.Combine(folder.FullName, ".git")) || File.Exists(Path.Combine(folder.FullName,
                ".git")))
                return Path.GetRelativePath(folder.FullName, directory).Replace('\\', '/');
        return ".";
    }
}
