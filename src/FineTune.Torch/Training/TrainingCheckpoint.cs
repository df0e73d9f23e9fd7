using System.Text.Json;
using FineTune.Core.Caching;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Torch.Formats;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>
/// A training checkpoint: <c>checkpoint/</c> in a train stage's work folder, holding the trained weights
/// (model.safetensors), the AdamW state (optimizer.bin), where the run stood (state.json) and the metrics logged so far
/// (metrics.jsonl, so a resumed run's log is whole). Written into a temporary folder, flushed to the disk, and swapped
/// in by renames (the old one aside, the new one in, then the old one removed), so a crash at any point leaves one
/// complete checkpoint: <see cref="Recover"/> puts the old one back when the new one never arrived.
/// </summary>
internal static class TrainingCheckpoint
{
    private const string FolderName = "checkpoint";
    private const string WeightsFile = "model.safetensors";
    private const string OptimizerFile = "optimizer.bin";
    private const string StateFile = "state.json";
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>
    /// Where the run stood; <paramref name="Key"/> names the run the checkpoint belongs to. The loss window (summed
    /// since the last logged line) lets a resumed run log the same means as an uninterrupted one.
    /// </summary>
    public sealed record State(string Key, int Seed, int Step, long MicroBatch, long Tokens, long TrainedTokens,
        double FirstLoss, double ElapsedSeconds, double WindowLoss = 0, int WindowSteps = 0);

    public static string FolderIn(string workDirectory) => Path.Combine(workDirectory, FolderName);

    public static string StatePathIn(string workDirectory) => Path.Combine(FolderIn(workDirectory), StateFile);

    /// <summary>
    /// What a checkpoint must match to be resumed: the settings (as the canonical tree the stage key hashes), the
    /// training data, the device and libtorch. Not the thread count: it changes the last bits of sums, not what the
    /// run is, so it must not discard a checkpoint.
    /// </summary>
    public static string KeyFor(TrainSettings settings, string dataHash, ComputeEnvironment environment) =>
        ContentHash.OfText(CanonicalJson.Serialize(new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["settings"] = SettingsReflection.ToPlainTree(settings),
            ["data"] = dataHash,
            [ComputeEnvironment.DeviceKey] = environment.Device,
            [ComputeEnvironment.LibTorchKey] = environment.LibTorchVersion,
        }));

    public static void Save(string workDirectory, IReadOnlyDictionary<string, Tensor> weights, AdamW optimizer,
        State state, string? metricsPath = null)
    {
        var folder = FolderIn(workDirectory);
        var temporary = folder + ".tmp";
        var old = folder + ".old";
        Recover(workDirectory);
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        Safetensors.Save(Path.Combine(temporary, WeightsFile), weights);
        optimizer.save_state_dict(Path.Combine(temporary, OptimizerFile));
        if (metricsPath is not null && File.Exists(metricsPath))
            File.Copy(metricsPath, Path.Combine(temporary, MetricsFile));
        // state.json last: a checkpoint folder is complete exactly when it has one.
        File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state));
        Durable.FlushTree(temporary);
        if (Directory.Exists(folder)) Directory.Move(folder, old);
        Directory.Move(temporary, folder);
        Durable.FlushDirectory(workDirectory);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    /// <summary>
    /// Finishes a swap that a crash interrupted: the old checkpoint goes back when the new one is not in place, and is
    /// removed when it is.
    /// </summary>
    public static void Recover(string workDirectory)
    {
        var folder = FolderIn(workDirectory);
        var old = folder + ".old";
        if (!Directory.Exists(old)) return;
        if (File.Exists(Path.Combine(folder, StateFile))) Directory.Delete(old, recursive: true);
        else
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.Move(old, folder);
        }
    }

    /// <summary>Whether there is a checkpoint to resume (after <see cref="Recover"/>), readable or not.</summary>
    public static bool Exists(string workDirectory)
    {
        Recover(workDirectory);
        return File.Exists(StatePathIn(workDirectory));
    }

    /// <summary>
    /// The state of the checkpoint in <paramref name="workDirectory"/>, or null when there is none or it cannot be
    /// read.
    /// </summary>
    public static State? TryReadState(string workDirectory)
    {
        Recover(workDirectory);
        var path = StatePathIn(workDirectory);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<State>(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or IOException) { return null; }
    }

    /// <summary>Copies the metrics the checkpoint logged to <paramref name="metricsPath"/> (replacing it).</summary>
    public static void RestoreMetrics(string workDirectory, string metricsPath)
    {
        var saved = Path.Combine(FolderIn(workDirectory), MetricsFile);
        if (File.Exists(saved)) File.Copy(saved, metricsPath, overwrite: true);
        else File.WriteAllText(metricsPath, "");
    }

    /// <summary>
    /// Copies the checkpoint's weights into <paramref name="weights"/> and its state into <paramref name="optimizer"/>.
    /// </summary>
    public static void LoadInto(string workDirectory, IReadOnlyDictionary<string, Tensor> weights, AdamW optimizer)
    {
        var folder = FolderIn(workDirectory);
        var saved = Safetensors.Load(Path.Combine(folder, WeightsFile));
        try
        {
            using var noGrad = no_grad();
            foreach (var (name, parameter) in weights) parameter.copy_(saved[name]);
        }
        finally
        {
            foreach (var tensor in saved.Values) tensor.Dispose();
        }
        optimizer.load_state_dict(Path.Combine(folder, OptimizerFile));
    }

    /// <summary>
    /// Makes a checkpoint moved in from another run's folder this run's own (run --resume-with-changes).
    /// </summary>
    public static void Adopt(string workDirectory, string key)
    {
        var state = TryReadState(workDirectory)
            ?? throw new InvalidOperationException($"no readable checkpoint state in {StatePathIn(workDirectory)}");
        File.WriteAllText(StatePathIn(workDirectory), JsonSerializer.Serialize(state with { Key = key }));
    }
}
