using System.Collections;
using System.Globalization;
using FineTune.Core.Diagnostics;

namespace FineTune.Torch.Distributed;

/// <summary>
/// Which process of a multi-process launch this is, read from the variables its launcher sets: Open MPI's mpirun
/// (<c>OMPI_COMM_WORLD_*</c>), Slurm's srun (<c>SLURM_PROCID</c>, <c>SLURM_STEP_NUM_TASKS</c>, <c>SLURM_LOCALID</c>)
/// or torchrun (<c>RANK</c>, <c>WORLD_SIZE</c>, <c>LOCAL_RANK</c>, <c>MASTER_ADDR</c>, <c>MASTER_PORT</c>).
/// mpirun comes first: inside a Slurm allocation mpirun's own ranks are the processes that train.
/// </summary>
internal sealed record LauncherEnvironment(string Launcher, int Rank, int WorldSize, int LocalRank,
    string? MasterAddress = null, int? MasterPort = null)
{
    /// <summary>One process, no launcher.</summary>
    public static readonly LauncherEnvironment Single = new("none", 0, 1, 0);

    public bool IsMultiProcess => WorldSize > 1;

    public static LauncherEnvironment FromProcess() =>
        From(Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal));

    public static LauncherEnvironment From(IReadOnlyDictionary<string, string> variables)
    {
        LauncherEnvironment launch;
        if (variables.ContainsKey("OMPI_COMM_WORLD_RANK"))
            launch = Checked("mpirun", variables, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK");
        // SLURM_PROCID alone is also set in a batch script; only srun sets the step's task count.
        else if (variables.ContainsKey("SLURM_PROCID") && variables.ContainsKey("SLURM_STEP_NUM_TASKS"))
            launch = Checked("srun", variables, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID");
        else if (variables.ContainsKey("RANK") && variables.ContainsKey("WORLD_SIZE"))
            launch = Checked("torchrun", variables, "RANK", "WORLD_SIZE", "LOCAL_RANK");
        else return Single;
        // torchrun sets them; under mpirun or srun a job script may, for the nccl backend's id exchange.
        return launch with
        {
            MasterAddress = variables.GetValueOrDefault("MASTER_ADDR") is { Length: > 0 } address ? address : null,
            MasterPort = variables.TryGetValue("MASTER_PORT", out var port) ? Number(port, "MASTER_PORT") : null,
        };
    }

    private static LauncherEnvironment Checked(string launcher, IReadOnlyDictionary<string, string> variables,
        string rankName, string sizeName, string localName)
    {
        var rank = Number(variables.GetValueOrDefault(rankName), rankName);
        var size = Number(variables.GetValueOrDefault(sizeName), sizeName);
        var local = variables.TryGetValue(localName, out var localText) ? Number(localText, localName) : rank;
        if (size < 1 || rank < 0 || rank >= size)
            throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
                $"{launcher}: {rankName}={rank} does not fit {sizeName}={size} (ranks are 0 to size - 1)",
                ExitCodes.InvalidInput);
        return new LauncherEnvironment(launcher, rank, size, local);
    }

    private static int Number(string? text, string name) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new FineTuneException(DiagnosticCodes.LauncherMismatch,
                $"{name}='{text}' is not a whole number; the launcher's variables are malformed",
                ExitCodes.InvalidInput);
}
