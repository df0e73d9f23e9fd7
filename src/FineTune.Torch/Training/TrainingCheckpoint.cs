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
/// (model.safetensors), the AdamW state (optimizer.bin) and where the run stood (state.json). Written into a temporary
/// folder and moved into place, so a crash leaves either the old checkpoint or the new one.
/// </summary>
internal static class TrainingCheckpoint
{
    private const string FolderName = "checkpoint";
    private const string WeightsFile = "model.safetensors";
    private const string OptimizerFile = "optimizer.bin";
    private const string StateFile = "state.json";

    /// <summary>Where the run stood; <paramref name="Key"/> names the run the checkpoint belongs to.</summary>
    public sealed record State(string Key, int Seed, int Step, long MicroBatch, long Tokens, long TrainedTokens,
        double FirstLoss, double ElapsedSeconds);

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
        State state)
    {
        var folder = FolderIn(workDirectory);
        var temporary = folder + ".tmp";
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        Safetensors.Save(Path.Combine(temporary, WeightsFile), weights);
        optimizer.save_state_dict(Path.Combine(temporary, OptimizerFile));
        File.WriteAllText(Path.Combine(temporary, StateFile), JsonSerializer.Serialize(state));
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.Move(temporary, folder);
    }

    /// <summary>
    /// The state of the checkpoint in <paramref name="workDirectory"/>, or null when there is none or it cannot be
    /// read.
    /// </summary>
    public static State? TryReadState(string workDirectory)
    {
        var path = StatePathIn(workDirectory);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<State>(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or IOException) { return null; }
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
