using FineTune.Core.Caching;

namespace FineTune.Core.Stages;

/// <summary>A stage as a run left it: its status, why it ran (or would), its committed entry and folder, what it
/// read.</summary>
/// <param name="Inputs">What the stage read (empty when its key could not be computed yet, in a dry run).</param>
internal sealed record StageOutcome(string Stage, StageStatus Status, IReadOnlyList<string> Reasons, StoreEntry? Entry,
    string? OutputDirectory,
    IReadOnlyList<StageInput> Inputs);
