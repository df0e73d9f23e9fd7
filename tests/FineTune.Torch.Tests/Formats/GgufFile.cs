using System.Text;

namespace FineTune.Torch.Tests.Formats;

/// <summary>
/// A GGUF reader written from the specification (ggml/docs/gguf.md) alone, to check files the exporter writes:
/// header, typed metadata, tensor infos with ggml dimension order, and the aligned data section.
/// </summary>
internal sealed class GgufFile
{
    public sealed record TensorInfo(string Name, ulong[] Dims, uint Type, ulong Offset);

    public uint Version { get; private init; }
    public Dictionary<string, object> Metadata { get; } = new(StringComparer.Ordinal);
    public List<TensorInfo> Tensors { get; } = [];
    public long DataStart { get; private set; }
    public byte[] Bytes { get; private init; } = [];

    public static GgufFile Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        using var reader = new BinaryReader(new MemoryStream(bytes), Encoding.UTF8);
        Assert.Equal("GGUF", Encoding.ASCII.GetString(reader.ReadBytes(4)));
        var file = new GgufFile { Version = reader.ReadUInt32(), Bytes = bytes };
        var tensorCount = reader.ReadUInt64();
        var kvCount = reader.ReadUInt64();
        for (ulong i = 0; i < kvCount; i++)
        {
            var key = ReadString(reader);
            file.Metadata.Add(key, ReadValue(reader, reader.ReadUInt32()));
        }
        for (ulong i = 0; i < tensorCount; i++)
        {
            var name = ReadString(reader);
            var dims = new ulong[reader.ReadUInt32()];
            for (var d = 0; d < dims.Length; d++) dims[d] = reader.ReadUInt64();
            file.Tensors.Add(new TensorInfo(name, dims, reader.ReadUInt32(), reader.ReadUInt64()));
        }
        var alignment = file.Metadata.TryGetValue("general.alignment", out var a) ? (long)(uint)a : 32;
        var position = reader.BaseStream.Position;
        file.DataStart = (position + alignment - 1) / alignment * alignment;
        return file;
    }

    public TensorInfo Tensor(string name) => Tensors.Single(t => t.Name == name);

    public ReadOnlySpan<byte> Data(TensorInfo tensor, long length) =>
        Bytes.AsSpan((int)(DataStart + (long)tensor.Offset), (int)length);

    public float[] F32(string name)
    {
        var tensor = Tensor(name);
        Assert.Equal(0u, tensor.Type);
        var count = tensor.Dims.Aggregate(1UL, (x, y) => x * y);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Data(tensor, (long)count * 4)).ToArray();
    }

    private static string ReadString(BinaryReader reader) =>
        Encoding.UTF8.GetString(reader.ReadBytes(checked((int)reader.ReadUInt64())));

    private static object ReadValue(BinaryReader reader, uint type) => type switch
    {
        0 => reader.ReadByte(),
        1 => reader.ReadSByte(),
        2 => reader.ReadUInt16(),
        3 => reader.ReadInt16(),
        4 => reader.ReadUInt32(),
        5 => reader.ReadInt32(),
        6 => reader.ReadSingle(),
        7 => reader.ReadByte() switch { 0 => false, 1 => true, var b => throw new InvalidDataException($"bool {b}") },
        8 => ReadString(reader),
        9 => ReadArray(reader),
        10 => reader.ReadUInt64(),
        11 => reader.ReadInt64(),
        12 => reader.ReadDouble(),
        _ => throw new InvalidDataException($"unknown GGUF value type {type}"),
    };

    private static object[] ReadArray(BinaryReader reader)
    {
        var type = reader.ReadUInt32();
        var items = new object[checked((int)reader.ReadUInt64())];
        for (var i = 0; i < items.Length; i++) items[i] = ReadValue(reader, type);
        return items;
    }
}
