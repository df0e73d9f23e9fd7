using static TorchSharp.torch;

namespace FineTune.Torch.Models;

/// <summary>
/// The gradients a custom autograd function's backward returns. libtorch takes its own references on return, but the
/// managed handles must outlive the return, so they are kept out of every dispose scope and released when this
/// thread's next custom backward starts (or, for a nested one, ends). Per thread: shared, one thread's backward could
/// release another's gradient before libtorch took it, which then arrived as none.
/// </summary>
internal static class HandedOnGradients
{
    [ThreadStatic] private static List<Tensor>? t_kept;

    /// <summary>Releases the gradients handed on by this thread's previous backward, which libtorch holds by now.</summary>
    public static void ReleasePrevious()
    {
        if (t_kept is null) return;
        foreach (var tensor in t_kept) tensor.Dispose();
        t_kept.Clear();
    }

    /// <summary>Detaches <paramref name="gradient"/> from its dispose scope and keeps it until the next release.</summary>
    public static void Keep(Tensor? gradient)
    {
        if (gradient is not null) (t_kept ??= []).Add(gradient.DetachFromDisposeScope());
    }
}
