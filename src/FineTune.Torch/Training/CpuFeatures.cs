namespace FineTune.Torch.Training;

/// <summary>What the CPU offers for bfloat16 compute, read from /proc/cpuinfo (Linux; elsewhere: unknown).</summary>
internal static class CpuFeatures
{
    /// <summary>
    /// Whether the flags of <paramref name="cpuinfo"/> include native bfloat16 dot products (avx512_bf16, or AMX's
    /// amx_bf16). Without them libtorch converts to float32 for every product, and bfloat16 is slower than float32.
    /// </summary>
    public static bool HasBfloat16Compute(string cpuinfo) => cpuinfo.Split('\n')
        .Where(line => line.StartsWith("flags", StringComparison.Ordinal))
        .SelectMany(line => line.Split([' ', '\t', ':'], StringSplitOptions.RemoveEmptyEntries))
        .Any(flag => flag is "avx512_bf16" or "amx_bf16");

    /// <summary>This machine's answer, read once; null when /proc/cpuinfo cannot be read.</summary>
    public static bool? ThisCpuHasBfloat16Compute() => ThisCpu.Value;

    private static readonly Lazy<bool?> ThisCpu = new(() =>
    {
        try
        {
            return HasBfloat16Compute(File.ReadAllText("/proc/cpuinfo"));
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    });
}
