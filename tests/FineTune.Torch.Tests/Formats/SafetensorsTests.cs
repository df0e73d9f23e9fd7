using System.Buffers.Binary;
using System.Text;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Formats;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ft-safetensors-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool Same(Tensor a, Tensor b)
        => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void Every_dtype_round_trips_exactly()
    {
        var source = arange(0, 12, dtype: ScalarType.Float64).reshape(3, 4) * 0.37 - 1.5;
        var tensors = new Dictionary<string, Tensor>
        {
            ["f64"] = source.clone(),
            ["f32"] = source.to(ScalarType.Float32),
            ["bf16"] = source.to(ScalarType.BFloat16),
            ["f16"] = source.to(ScalarType.Float16),
            ["i64"] = tensor(new long[] { long.MinValue, -1, 0, long.MaxValue }),
            ["i32"] = tensor(new[] { int.MinValue, -7, 7, int.MaxValue }).reshape(2, 2),
            ["i8"] = tensor(new sbyte[] { -128, -1, 0, 127 }),
            ["u8"] = tensor(new byte[] { 0, 1, 200, 255 }),
            ["bool"] = tensor(new[] { true, false, false, true, true }),
            ["empty"] = zeros(0, 3),
            ["scalar"] = tensor(3.25f),
        };
        var path = Path.Combine(_dir, "all.safetensors");
        Safetensors.Save(path, tensors);

        var loaded = Safetensors.Load(path);
        Assert.Equal(tensors.Keys.Order(), loaded.Keys.Order());
        foreach (var (name, expected) in tensors) Assert.True(Same(expected, loaded[name]), $"tensor {name} differs after the round trip");

        var header = Safetensors.ReadHeader(path);
        Assert.Equal("pt", header.Metadata["format"]);
        Assert.Equal(tensors.Keys.Order(StringComparer.Ordinal), header.Tensors.Select(t => t.Name));
        Assert.Equal("BF16", header["bf16"]!.Dtype);
        Assert.Equal(new long[] { 3, 4 }, header["bf16"]!.Shape);
    }

    [Fact]
    public void Row_slices_cover_the_tensor_in_order_and_whole_rows()
    {
        var path = Path.Combine(_dir, "rows.safetensors");
        using var first = arange(0, 6, dtype: ScalarType.Float32);
        using var rows = arange(0, 30, dtype: ScalarType.BFloat16).reshape(10, 3);
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["a"] = first, ["rows"] = rows });
        var header = Safetensors.ReadHeader(path);

        // 4 rows of 3 bfloat16 values (24 bytes) per slice: 4 + 4 + 2 rows, read after tensor a's 24 bytes.
        var slices = Safetensors.ReadRowSlices(path, header, header["rows"]!, 24).Select(s => s.clone()).ToList();

        Assert.Equal([4L, 4, 2], slices.Select(s => s.shape[0]));
        Assert.All(slices, s => Assert.Equal(ScalarType.BFloat16, s.dtype));
        Assert.True(Same(rows, cat(slices, 0)));
    }

    [Fact]
    public void Shards_convert_floats_slice_by_slice_and_copy_scalars_empty_and_integer_tensors()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["big"] = randn(3000, 1000).to(ScalarType.BFloat16), // 6 MB: more than one 4 MB slice
            ["scalar"] = tensor(3.25f, ScalarType.Float16),
            ["empty"] = zeros(0, 3),
            ["i64"] = tensor(new long[] { long.MinValue, 0, long.MaxValue }),
        };
        var source = Path.Combine(_dir, "source.safetensors");
        Safetensors.Save(source, tensors);
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "shards")).FullName;

        Assert.Equal(3_000_000 + 1 + 0 + 3, SafetensorsShards.Write([source], folder, ScalarType.Float32, long.MaxValue));

        var written = Safetensors.Load(Path.Combine(folder, "model.safetensors"));
        foreach (var name in new[] { "big", "scalar", "empty" })
            Assert.True(Same(tensors[name].to(ScalarType.Float32), written[name]), $"{name} differs");
        Assert.True(Same(tensors["i64"], written["i64"]));
    }

    [Fact]
    public void Writer_pads_the_header_to_8_bytes_and_puts_metadata_first()
    {
        var path = Path.Combine(_dir, "small.safetensors");
        Safetensors.Save(path, new Dictionary<string, Tensor> { ["b"] = ones(2), ["a"] = zeros(1, dtype: ScalarType.Int64) });

        var bytes = File.ReadAllBytes(path);
        var headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + headerLength) % 8);
        var headerText = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.Equal(
            """{"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""",
            headerText.TrimEnd(' '));
        Assert.Equal(8 + headerLength + 16, bytes.Length);
        Assert.Equal(1.0f, BitConverter.ToSingle(bytes, (int)(8 + headerLength + 8)));
    }

    [Fact]
    public void Reads_a_file_written_by_hand_per_the_spec()
    {
        // Two tensors in reverse name order on disk, as the Python library may lay them out.
        var data = new List<byte>();
        foreach (var value in new[] { 1.5f, -2f, 0.25f }) data.AddRange(BitConverter.GetBytes(value));
        data.AddRange(new byte[] { 0x80, 0x3F, 0x00, 0xBF }); // bf16 1.0 and -0.5, little-endian
        var path = WriteRaw("hand.safetensors",
            """{"__metadata__":{"format":"pt","note":"hand"},"z.weight":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"a.bias":{"dtype":"BF16","shape":[1,2],"data_offsets":[12,16]}}""",
            data.ToArray());

        var loaded = Safetensors.Load(path);
        Assert.Equal(new[] { 1.5f, -2f, 0.25f }, loaded["z.weight"].data<float>().ToArray());
        Assert.Equal(ScalarType.BFloat16, loaded["a.bias"].dtype);
        Assert.Equal(new long[] { 1, 2 }, loaded["a.bias"].shape);
        Assert.Equal(new[] { 1.0f, -0.5f }, loaded["a.bias"].to(ScalarType.Float32).reshape(-1).data<float>().ToArray());
        Assert.Equal("hand", Safetensors.ReadHeader(path).Metadata["note"]);

        var onlyBias = Safetensors.Load(path, keep: name => name.EndsWith(".bias"));
        Assert.Equal(["a.bias"], onlyBias.Keys);
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "'v' overlaps")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}""", 16, "'v' leaves a gap")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "'w' ends at byte 16 of the data, past its end (8 bytes)")]
    [InlineData("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "'w' spans 8 bytes but shape [3] of F32 needs 12")]
    [InlineData("""{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}""", 8, "'w' has dtype 'F8_E4M3', which is not supported")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 8, "the tensors cover 4 bytes but the data section holds 8")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "'w' has a 'shape' value that is not a non-negative integer")]
    [InlineData("""{"w":""", 4, "not valid JSON")]
    // 4 bytes x (2^62 + 2) elements wraps to 8 in 64 bits: unchecked, it would match the 8 bytes and allocate.
    [InlineData("""{"w":{"dtype":"F32","shape":[4611686018427387906],"data_offsets":[0,8]}}""", 8, "'w' has a shape too large to address")]
    [InlineData("""{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, "'w' has a shape too large to address")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,9223372036854775807]}}""", 8, "spans 9223372036854775807 bytes")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}}""", 8, "not a non-negative integer")]
    // Found by fuzz/FineTune.Fuzz: System.Text.Json throws InvalidOperationException for these, not JsonException.
    [InlineData("""{"\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "half a surrogate pair")]
    [InlineData("""{"__metadata__":{"note":"\udc00"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "half a surrogate pair")]
    public void Corrupt_headers_are_rejected_naming_file_and_tensor(string header, int dataBytes, string expected)
    {
        var path = WriteRaw("bad.safetensors", header, new byte[dataBytes]);
        var error = Assert.Throws<FineTuneException>(() => Safetensors.Load(path));
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal("FT0510", diagnostic.Code);
        Assert.Equal(path, diagnostic.File);
        Assert.Contains(expected, diagnostic.Message);
        Assert.Contains("bad.safetensors", error.Message);
    }

    [Fact]
    public void Header_length_beyond_the_file_is_rejected()
    {
        var path = Path.Combine(_dir, "short.safetensors");
        var bytes = new byte[8 + 10];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1000);
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<FineTuneException>(() => Safetensors.ReadHeader(path));
        Assert.Contains("header length 1000 runs past the end of the file (18 bytes)", error.Message);

        File.WriteAllBytes(path, new byte[3]);
        Assert.Contains("too short", Assert.Throws<FineTuneException>(() => Safetensors.Load(path)).Message);
    }

    private string WriteRaw(string name, string header, byte[] data)
    {
        var path = Path.Combine(_dir, name);
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var padded = headerBytes.Concat(Enumerable.Repeat((byte)' ', (8 - headerBytes.Length % 8) % 8)).ToArray();
        var length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded.Length);
        File.WriteAllBytes(path, [.. length, .. padded, .. data]);
        return path;
    }
}
