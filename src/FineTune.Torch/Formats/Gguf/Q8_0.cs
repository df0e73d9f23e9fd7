using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace FineTune.Torch.Formats.Gguf;

/// <summary>
/// ggml's Q8_0: each run of 32 consecutive values of a row becomes a block of 34 bytes, a float16 scale
/// d = max|x| / 127 and 32 int8 values round(x / d) (rounded half away from zero, as llama.cpp's
/// <c>quantize_row_q8_0_ref</c> does by multiplying with 1/d). A row must be a multiple of 32 values long.
/// </summary>
internal static class Q8_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 2 + BlockSize;

    // Blocks quantized per slice: a 2 MB buffer whatever the tensor's size.
    private const int BlocksPerSlice = 1 << 16;

    // Blocks per parallel work item: large enough that scheduling costs nothing against the arithmetic.
    private const int BlocksPerWorkItem = 4096;

    public static bool CanQuantize(long[] shape) => shape.Length >= 1 && shape[^1] % BlockSize == 0;

    /// <summary>
    /// Writes the blocks of <paramref name="weights"/> (any float dtype, row-major). One pass over float32 values per
    /// block, in parallel over blocks: a chain of whole-tensor operations made the GGUF export compute-bound.
    /// </summary>
    public static void Write(Stream stream, Tensor weights)
    {
        using var scope = NewDisposeScope();
        var values = weights.detach().cpu().to(ScalarType.Float32).contiguous().view(-1, BlockSize);
        var blockCount = values.shape[0];
        // Rented: a writer called once per slice of rows would otherwise allocate its 2 MB on every call.
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(BlocksPerSlice, blockCount) * BlockBytes);
        try
        {
            for (long start = 0; start < blockCount; start += BlocksPerSlice)
            {
                var n = (int)Math.Min(BlocksPerSlice, blockCount - start);
                using var slice = values.narrow(0, start, n);
                Quantize(slice.bytes, buffer.AsSpan(0, n * BlockBytes));
                stream.Write(buffer, 0, n * BlockBytes);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The float32 blocks of <paramref name="source"/> into <paramref name="target"/>, in parallel.</summary>
    private static unsafe void Quantize(ReadOnlySpan<byte> source, Span<byte> target)
    {
        var blocks = target.Length / BlockBytes;
        fixed (byte* from = source)
        fixed (byte* to = target)
        {
            var x = (nint)from;
            var y = (nint)to;
            Parallel.For(0, (blocks + BlocksPerWorkItem - 1) / BlocksPerWorkItem, item =>
            {
                var first = item * BlocksPerWorkItem;
                QuantizeBlocks((float*)x + (long)first * BlockSize, (byte*)y + (long)first * BlockBytes,
                    Math.Min(BlocksPerWorkItem, blocks - first));
            });
        }
    }

    /// <summary>llama.cpp's quantize_row_q8_0_ref: d = max|x| / 127 stored as float16, q = roundf(x · (1/d)).</summary>
    private static unsafe void QuantizeBlocks(float* x, byte* y, int blocks)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            QuantizeBlocksScalar(x, y, blocks);
            return;
        }
        for (var b = 0; b < blocks; b++, x += BlockSize, y += BlockBytes)
        {
            var v0 = Vector256.Load(x);
            var v1 = Vector256.Load(x + 8);
            var v2 = Vector256.Load(x + 16);
            var v3 = Vector256.Load(x + 24);
            var max = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)),
                Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            var half = Vector128.Max(max.GetLower(), max.GetUpper());
            half = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(2, 3, 0, 1)));
            half = Vector128.Max(half, Vector128.Shuffle(half, Vector128.Create(1, 0, 3, 2)));
            var d = half.ToScalar() / 127f;
            var inverse = Vector256.Create(d != 0 ? 1f / d : 0f);
            Unsafe.WriteUnaligned(y, (Half)d); // little-endian, as GGUF is
            var low = Vector256.Narrow(Round(v0 * inverse), Round(v1 * inverse));
            var high = Vector256.Narrow(Round(v2 * inverse), Round(v3 * inverse));
            Vector256.Narrow(low, high).Store((sbyte*)(y + 2));
        }
    }

    // roundf, half away from zero, the way .NET's MathF.Round(x, AwayFromZero) computes it for |x| < 2^23: add the
    // largest float below 0.5 (0x3EFFFFFF) with x's sign, then convert truncating (adding 0.5 itself would round
    // 0.49999997 up to 1). |x| <= 127 here, so the conversion never saturates.
    private static Vector256<int> Round(Vector256<float> x) => Vector256.ConvertToInt32Native(
        x + ((x.AsUInt32() & Vector256.Create(0x80000000u)) | Vector256.Create(0x3EFFFFFFu)).AsSingle());

    /// <summary>The blocks of <paramref name="values"/> by the scalar path that CPUs without 256-bit vectors take.</summary>
    internal static unsafe byte[] QuantizeScalar(float[] values)
    {
        var blocks = new byte[values.Length / BlockSize * BlockBytes];
        fixed (float* x = values)
        fixed (byte* y = blocks)
            QuantizeBlocksScalar(x, y, values.Length / BlockSize);
        return blocks;
    }

    private static unsafe void QuantizeBlocksScalar(float* x, byte* y, int blocks)
    {
        for (var b = 0; b < blocks; b++, x += BlockSize, y += BlockBytes)
        {
            var amax = 0f;
            for (var i = 0; i < BlockSize; i++) amax = MathF.Max(amax, MathF.Abs(x[i]));
            var d = amax / 127f;
            var inverse = d != 0 ? 1f / d : 0f;
            Unsafe.WriteUnaligned(y, (Half)d);
            var q = (sbyte*)(y + 2);
            for (var i = 0; i < BlockSize; i++) q[i] = (sbyte)MathF.Round(x[i] * inverse, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>The values Q8_0 blocks stand for (d * q), as llama.cpp's dequantize_row_q8_0 computes them.</summary>
    public static float[] Dequantize(ReadOnlySpan<byte> blocks)
    {
        var values = new float[blocks.Length / BlockBytes * BlockSize];
        for (var b = 0; b < blocks.Length / BlockBytes; b++)
        {
            var block = blocks.Slice(b * BlockBytes, BlockBytes);
            var d = (float)BitConverter.ToHalf(block[..2]);
            for (var i = 0; i < BlockSize; i++) values[b * BlockSize + i] = d * (sbyte)block[2 + i];
        }
        return values;
    }
}
