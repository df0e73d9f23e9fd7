using FineTune.Core.Stages;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

internal static class TorchDevices
{
    /// <summary>The device a stage runs on: the environment's when it names one torch knows, else the CPU.</summary>
    public static Device Of(ComputeEnvironment environment)
    {
        var name = environment.Device;
        if (name.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) && cuda.is_available()) return device(name);
        return CPU;
    }
}
