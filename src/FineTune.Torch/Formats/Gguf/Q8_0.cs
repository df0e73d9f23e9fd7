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

    // Blocks quantized per slice: a few MB of temporaries whatever the tensor's size.
    private const long BlocksPerSlice = 1 << 16;

    public static bool CanQuantize(long[] shape) => shape.Length >= 1 && shape[^1] % BlockSize == 0;

    /// <summary>Writes the blocks of <paramref name="weights"/> (any float dtype, row-major).</summary>
    public static void Write(Stream stream, Tensor weights)
    {
        using var scope = NewDisposeScope();
        var blocks = weights.detach().cpu().contiguous().view(-1, BlockSize);
        var count = blocks.shape[0];
        var buffer = new byte[BlocksPerSlice * BlockBytes];
        for (long start = 0; start < count; start += BlocksPerSlice)
        {
            using var inner = NewDisposeScope();
            var n = Math.Min(BlocksPerSlice, count - start);
            var slice = blocks.narrow(0, start, n).to(ScalarType.Float32);
            var d = slice.abs().amax([1], keepdim: true) / 127f;
            var inverse = where(d.eq(0), zeros_like(d), d.reciprocal());
            var scaled = slice * inverse;
            var q = (scaled.sign() * (scaled.abs() + 0.5f).floor()).to(ScalarType.Int8).contiguous();
            var scales = d.to(ScalarType.Float16).contiguous();
            var qBytes = q.bytes;
            var dBytes = scales.bytes;
            for (var b = 0; b < n; b++)
            {
                var target = buffer.AsSpan(b * BlockBytes, BlockBytes);
                dBytes.Slice(b * 2, 2).CopyTo(target);
                qBytes.Slice(b * BlockSize, BlockSize).CopyTo(target[2..]);
            }
            stream.Write(buffer, 0, (int)(n * BlockBytes));
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
