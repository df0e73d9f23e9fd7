using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Training;

public sealed class CpuFeaturesTests
{
    // Shortened /proc/cpuinfo texts as Linux writes them (one "flags" line per logical CPU).
    private const string Sapphire = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n";
    private const string Skylake = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n";
    private const string AmxOnly = "flags\t\t: fpu avx2 amx_bf16\n";

    [Fact]
    public void Bfloat16_compute_is_read_from_the_flags_line()
    {
        Assert.True(CpuFeatures.HasBfloat16Compute(Sapphire));
        Assert.True(CpuFeatures.HasBfloat16Compute(AmxOnly));
        Assert.False(CpuFeatures.HasBfloat16Compute(Skylake));
        Assert.False(CpuFeatures.HasBfloat16Compute("model name\t: avx512_bf16 lookalike in a name\n"));
    }

    [Fact]
    public void Auto_dtype_is_bfloat16_only_on_a_cpu_that_computes_it_natively()
    {
        Assert.Equal(ScalarType.Float32, Trainer.ScalarTypeOf("auto", CPU, CpuFeatures.HasBfloat16Compute(Skylake)));
        Assert.Equal(ScalarType.BFloat16, Trainer.ScalarTypeOf("auto", CPU, CpuFeatures.HasBfloat16Compute(Sapphire)));
        Assert.Equal(ScalarType.BFloat16, Trainer.ScalarTypeOf("auto", CPU, CpuFeatures.HasBfloat16Compute(AmxOnly)));
        // Explicit dtypes are taken as written, whatever the CPU.
        Assert.Equal(ScalarType.Float32, Trainer.ScalarTypeOf("float32", CPU, cpuHasBfloat16Compute: true));
        Assert.Equal(ScalarType.BFloat16, Trainer.ScalarTypeOf("bfloat16", CPU, cpuHasBfloat16Compute: false));
    }
}
