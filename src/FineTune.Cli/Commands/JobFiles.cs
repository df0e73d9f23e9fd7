using System.Globalization;
using System.Text;
using YamlDotNet.Serialization;

namespace FineTune.Cli.Commands;

/// <summary>What a job file launches: the pipeline, where it lives, how many ranks, and the run's arguments.</summary>
internal sealed record JobRequest(string PipelineName, string PipelineDirectory, string PipelineFile, int Ranks,
    int Nodes, int CpusPerRank, IReadOnlyList<string> Sets, string? Image, string Volume,
    string DirectoryInRepository);

/// <summary>
/// Job files for a data-parallel run: a Slurm batch script (sbatch) and a Kubernetes Job manifest. Every rank runs
/// <c>dotnet finetune run</c> on the same pipeline folder, so that folder (pipeline, data, store) must be on storage
/// every node sees; rank 0 alone writes into it.
/// </summary>
internal static class JobFiles
{
    /// <summary>
    /// An sbatch script: one task per rank, srun starting them with PMIx (Open MPI's ranks then find each other).
    /// </summary>
    public static string Slurm(JobRequest job)
    {
        var c = CultureInfo.InvariantCulture;
        var script = new StringBuilder();
        script.Append("#!/bin/bash\n");
        script.Append(c, $"# Data-parallel training of pipeline '{job.PipelineName}' over {job.Ranks} ranks, ");
        script.Append("written by dotnet finetune launch.\n");
        script.Append(c, $"# Submit with: sbatch {Job(job)}.sbatch\n");
        script.Append(c, $"#SBATCH --job-name={Job(job)}\n");
        script.Append(c, $"#SBATCH --nodes={job.Nodes}\n");
        script.Append(c, $"#SBATCH --ntasks={job.Ranks}\n");
        script.Append(c, $"#SBATCH --cpus-per-task={job.CpusPerRank}\n");
        script.Append(c, $"#SBATCH --output={Job(job)}-%j.out\n");
        script.Append("set -euo pipefail\n");
        script.Append("# The pipeline folder (pipeline, data, .finetune store) must be on storage every node sees.\n");
        script.Append(c, $"cd {Shell(job.PipelineDirectory)}\n");
        script.Append("export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK}\"\n");
        script.Append("# Without PMIx in Slurm: mpirun (Open MPI reads the allocation) instead of srun --mpi=pmix.\n");
        script.Append(c, $"srun --mpi=pmix --kill-on-bad-exit=1 {RunCommand(job)}\n");
        return script.ToString();
    }

    /// <summary>
    /// A Kubernetes batch/v1 Job: one pod that starts the ranks with mpirun on its node, the pipeline folder on a
    /// persistent volume claim. Ranks on several nodes need an MPI launcher across pods (the Kubeflow MPI Operator's
    /// MPIJob), which this file does not set up.
    /// </summary>
    public static string Kubernetes(JobRequest job)
    {
        const string mount = "/workspace";
        var setup = job.Image is null
            ? "apt-get update -qq && apt-get install -y -qq openmpi-bin > /dev/null && dotnet tool restore && "
            : "";
        var command = setup + $"mpirun --allow-run-as-root -np {job.Ranks} {RunCommand(job)}";
        var manifest = new Dictionary<string, object>
        {
            ["apiVersion"] = "batch/v1",
            ["kind"] = "Job",
            ["metadata"] = new Dictionary<string, object> { ["name"] = Job(job) },
            ["spec"] = new Dictionary<string, object>
            {
                ["backoffLimit"] = 0,
                ["template"] = new Dictionary<string, object>
                {
                    ["spec"] = new Dictionary<string, object>
                    {
                        ["restartPolicy"] = "Never",
                        ["containers"] = new List<object>
                        {
                            new Dictionary<string, object>
                            {
                                ["name"] = "train",
                                ["image"] = job.Image ?? "mcr.microsoft.com/dotnet/sdk:10.0",
                                ["workingDir"] = job.DirectoryInRepository == "." ? mount
                                    : $"{mount}/{job.DirectoryInRepository}",
                                ["command"] = new List<string> { "/bin/sh", "-c", command },
                                ["env"] = new List<object>
                                {
                                    Variable("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
                                    Variable("OMP_NUM_THREADS", job.CpusPerRank.ToString(CultureInfo.InvariantCulture)),
                                },
                                ["resources"] = new Dictionary<string, object>
                                {
                                    ["requests"] = new Dictionary<string, object>
                                    {
                                        ["cpu"] = (job.Ranks * job.CpusPerRank)
                                            .ToString(CultureInfo.InvariantCulture),
                                    },
                                },
                                ["volumeMounts"] = new List<object>
                                {
                                    new Dictionary<string, object> { ["name"] = "work", ["mountPath"] = mount },
                                },
                            },
                        },
                        ["volumes"] = new List<object>
                        {
                            new Dictionary<string, object>
                            {
                                ["name"] = "work",
                                ["persistentVolumeClaim"] =
                                    new Dictionary<string, object> { ["claimName"] = job.Volume },
                            },
                        },
                    },
                },
            },
        };
        return $"# Data-parallel training of pipeline '{job.PipelineName}' over {job.Ranks} ranks, written by dotnet "
            + $"finetune launch.\n# The claim '{job.Volume}' holds the repository; {job.DirectoryInRepository} inside "
            + $"it is the pipeline folder.\n# Apply with: kubectl apply -f {Job(job)}.job.yaml\n"
            + new SerializerBuilder().WithQuotingNecessaryStrings().Build().Serialize(manifest);
    }

    private static Dictionary<string, object> Variable(string name, string value) =>
        new() { ["name"] = name, ["value"] = value };

    private static string RunCommand(JobRequest job) =>
        string.Join(' ', new[] { "dotnet", "finetune", "run", job.PipelineFile }
            .Concat(job.Sets.SelectMany(s => new[] { "--set", s })).Select(Shell));

    /// <summary>A job name Slurm and Kubernetes both accept (DNS label: lower case, digits, '-').</summary>
    public static string Job(JobRequest job)
    {
        var name = new string([.. ("finetune-" + job.PipelineName).ToLowerInvariant()
            .Select(ch => char.IsAsciiLetterOrDigit(ch) ? ch : '-')]).Trim('-');
        return name.Length > 63 ? name[..63].TrimEnd('-') : name;
    }

    /// <summary>A word for sh: as is when it is plain, else in single quotes.</summary>
    private static string Shell(string word) =>
        word.Length > 0 && word.All(ch => char.IsAsciiLetterOrDigit(ch) || "-_./=:,@+%".Contains(ch))
            ? word
            : "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
