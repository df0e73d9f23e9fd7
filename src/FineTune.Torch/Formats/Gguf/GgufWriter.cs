using System.Buffers.Binary;
using System.Text;

namespace FineTune.Torch.Formats.Gguf;

/// <summary>GGUF metadata value types, numbered as the GGUF specification numbers them.</summary>
internal enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>The ggml tensor types the export writes, with ggml's numbers.</summary>
internal enum GgmlType : uint { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 }

/// <summary>
/// A tensor of a GGUF file: its name, its shape in PyTorch order (outermost first; the file stores ggml's order,
/// innermost first), its type, and a callback that streams exactly its bytes when the data section is written.
/// </summary>
internal sealed record GgufTensor(string Name, long[] Shape, GgmlType Type, Action<Stream> WriteData)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);

    public long ByteSize => Type switch
    {
        GgmlType.F32 => Elements * 4,
        GgmlType.F16 or GgmlType.BF16 => Elements * 2,
        GgmlType.Q8_0 => Elements / Q8_0.BlockSize * Q8_0.BlockBytes,
        _ => throw new InvalidOperationException($"no size for {Type}"),
    };
}

/// <summary>
/// Writes a GGUF version 3 file as the specification lays it out (ggml/docs/gguf.md): the magic "GGUF", the version,
/// the tensor and metadata counts, the metadata key/value pairs, the tensor infos (name, dimensions innermost first,
/// type, offset from the start of the data section), padding to the alignment, then each tensor's data at its
/// aligned offset. All integers are little-endian; strings are a uint64 length and UTF-8 bytes without a terminator.
/// Tensor data is produced one tensor at a time, so writing never holds more than one tensor.
/// </summary>
internal sealed class GgufWriter
{
    public const uint Version = 3;
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const int Alignment = 32;

    private readonly List<(string Key, GgufValueType Type, object Value)> _metadata = [];
    private readonly List<GgufTensor> _tensors = [];

    public IReadOnlyList<GgufTensor> Tensors => _tensors;

    public void Add(string key, string value) => Put(key, GgufValueType.String, value);
    public void Add(string key, uint value) => Put(key, GgufValueType.UInt32, value);
    public void Add(string key, int value) => Put(key, GgufValueType.Int32, value);
    public void Add(string key, float value) => Put(key, GgufValueType.Float32, value);
    public void Add(string key, bool value) => Put(key, GgufValueType.Bool, value);
    public void Add(string key, IReadOnlyList<string> values) => Put(key, GgufValueType.Array, values);
    public void Add(string key, IReadOnlyList<int> values) => Put(key, GgufValueType.Array, values);

    public void AddTensor(GgufTensor tensor)
    {
        if (_tensors.Any(t => t.Name == tensor.Name))
            throw new InvalidOperationException($"tensor '{tensor.Name}' is added twice");
        _tensors.Add(tensor);
    }

    private void Put(string key, GgufValueType type, object value)
    {
        if (_metadata.Any(m => m.Key == key)) throw new InvalidOperationException($"metadata key '{key}' is set twice");
        _metadata.Add((key, type, value));
    }

    public void Write(string path)
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using (var header = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true))
        {
            header.Write(Magic);
            header.Write(Version);
            header.Write((ulong)_tensors.Count);
            header.Write((ulong)_metadata.Count);
            foreach (var (key, type, value) in _metadata)
            {
                WriteString(header, key);
                header.Write((uint)type);
                WriteValue(header, type, value);
            }
            ulong offset = 0;
            foreach (var tensor in _tensors)
            {
                WriteString(header, tensor.Name);
                header.Write((uint)tensor.Shape.Length);
                foreach (var dim in tensor.Shape.Reverse()) header.Write((ulong)dim);
                header.Write((uint)tensor.Type);
                header.Write(offset);
                offset += (ulong)Align(tensor.ByteSize);
            }
        }
        Pad(file);
        foreach (var tensor in _tensors)
        {
            var start = file.Position;
            tensor.WriteData(file);
            if (file.Position - start != tensor.ByteSize)
                throw new InvalidOperationException($"tensor '{tensor.Name}' wrote {file.Position - start} bytes, " +
                    $"not {tensor.ByteSize}");
            Pad(file);
        }
    }

    private static long Align(long size) => (size + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream stream)
    {
        var padding = (int)(Align(stream.Position) - stream.Position);
        if (padding > 0) stream.Write(new byte[padding]);
    }

    private static void WriteString(BinaryWriter writer, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    private static void WriteValue(BinaryWriter writer, GgufValueType type, object value)
    {
        switch (type)
        {
            case GgufValueType.String: WriteString(writer, (string)value); break;
            case GgufValueType.UInt32: writer.Write((uint)value); break;
            case GgufValueType.Int32: writer.Write((int)value); break;
            case GgufValueType.Float32: writer.Write((float)value); break;
            case GgufValueType.Bool: writer.Write((bool)value ? (byte)1 : (byte)0); break;
            case GgufValueType.Array when value is IReadOnlyList<string> strings:
                writer.Write((uint)GgufValueType.String);
                writer.Write((ulong)strings.Count);
                foreach (var s in strings) WriteString(writer, s);
                break;
            case GgufValueType.Array when value is IReadOnlyList<int> ints:
                writer.Write((uint)GgufValueType.Int32);
                writer.Write((ulong)ints.Count);
                Span<byte> buffer = stackalloc byte[4];
                foreach (var i in ints)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(buffer, i);
                    writer.Write(buffer);
                }
                break;
            default: throw new InvalidOperationException($"cannot write a {type} value");
        }
    }
}
