using System.Reflection;
using FineTune.Core.Diagnostics;
using FineTune.Core.Stages;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Training;

/// <summary>Resolves the device a torch stage runs on and describes it for stage keys and the lock file.</summary>
internal static class ComputeEnvironmentProvider
{
#if TORCH_CUDA
    private const bool CudaBuild = true;
#else
    private const bool CudaBuild = false;
#endif

    /// <summary>
    /// auto: CUDA when libtorch sees a GPU, else the CPU. cuda: a GPU or an FT0501 error. cpu: the CPU.
    /// <paramref name="threads"/> (when given) sets libtorch's intra-op thread count first.
    /// </summary>
    public static ComputeEnvironment Resolve(string requestedDevice, int? threads = null)
    {
        if (threads is > 0) torch.set_num_threads(threads.Value);
        var device = requestedDevice switch
        {
            "cpu" => "cpu",
            // A CPU build of the tool cannot reach CUDA: it answers without loading libtorch, so that an up-to-date
            // pipeline re-runs without that half second.
            "auto" => CudaBuild && cuda.is_available() ? "cuda" : "cpu",
            "cuda" => cuda.is_available()
                ? "cuda"
                : throw new FineTuneException(DiagnosticCodes.CudaUnavailable,
                    "device 'cuda' was requested but libtorch sees no CUDA device. This build uses the CPU libtorch "
                    + "(libtorch-cpu-linux-x64); rebuild with -p:TorchBackend=cuda on a machine with an NVIDIA GPU, " +
                    "or set device: auto or cpu.",
                    ExitCodes.StageFailed),
            _ => throw new FineTuneException(DiagnosticCodes.UnknownDevice,
                $"unknown device '{requestedDevice}'; use auto, cpu or cuda"),
        };
        return new ComputeEnvironment(device, LibTorchVersion(), torch.get_num_threads);
    }

    /// <summary>
    /// The device a recorded device string names, without what the train stage adds to it ("cpu, auto bfloat16",
    /// "cuda (2 ranks)"): what a later stage asks <see cref="Resolve"/> for to run where training ran.
    /// </summary>
    public static string RecordedDevice(string recorded) =>
        recorded.StartsWith("cuda", StringComparison.Ordinal) ? "cuda"
        : recorded.StartsWith("cpu", StringComparison.Ordinal) ? "cpu"
        : recorded;

    public static Device TorchDevice(ComputeEnvironment environment) =>
        RecordedDevice(environment.Device) == "cuda" ? CUDA : CPU;

    /// <summary>
    /// libtorch's own version string (torch.__version__), else the version TorchSharp was built against, read from
    /// the native package's assembly name TorchSharp expects.
    /// </summary>
    public static string LibTorchVersion()
    {
        // torch.__version__ is TorchSharp's constant libtorchPackageVersion; read as a constant it leaves libtorch
        // unloaded (touching the torch class loads it).
        if (typeof(torch).GetField("libtorchPackageVersion", BindingFlags.NonPublic | BindingFlags.Public
                | BindingFlags.Static) is { IsLiteral: true } field
            && field.GetRawConstantValue() is string constant && !string.IsNullOrWhiteSpace(constant))
            return constant;
        try
        {
            var version = torch.__version__;
            if (!string.IsNullOrWhiteSpace(version)) return version;
        }
        catch (Exception e) when (e is not OutOfMemoryException) { }
        return typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            is { } torchSharp
            ? "torchsharp-" + torchSharp
            : "unknown";
    }
}
