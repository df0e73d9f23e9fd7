namespace FineTune.Core;

/// <param name="Done">Units done so far.</param>
/// <param name="Total">Units in all (0 when unknown).</param>
/// <param name="Unit">"step", "byte", "example" ...</param>
/// <param name="Detail">Figures shown after the bar: "loss 2.31 lr 1.0e-04 2,340 tok/s".</param>
internal sealed record StageProgress(long Done, long Total, string Unit, string? Detail = null);
