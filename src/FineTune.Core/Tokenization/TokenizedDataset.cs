using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace FineTune.Core.Tokenization;

/// <summary>
/// Tokenized examples as one compact binary file, read by the trainer without parsing text.
/// Layout (little-endian):
/// <code>
///   magic "FTTOKENS" | uint32 format version | uint32 example count N | uint64 token count T
///   uint64 offsets[N + 1]          (example i spans tokens offsets[i] .. offsets[i+1])
///   int32  ids[T]
///   int32  labels[T]               (-100 where the token carries no loss, else the token id itself)
/// </code>
/// Labels are aligned with ids (not shifted); the trainer shifts them when predicting the next token.
/// </summary>
internal sealed class TokenizedDataset
{
    public const int IgnoreLabel = -100;
    private static ReadOnlySpan<byte> Magic => "FTTOKENS"u8;
    private const uint FormatVersion = 1;

    private readonly long[] _offsets;
    private readonly int[] _ids;
    private readonly int[] _labels;

    private TokenizedDataset(long[] offsets, int[] ids, int[] labels)
    {
        _offsets = offsets;
        _ids = ids;
        _labels = labels;
    }

    public int Count => _offsets.Length - 1;
    public long TokenCount => _ids.Length;

    public ReadOnlySpan<int> Ids(int example) => _ids.AsSpan((int)_offsets[example], Length(example));
    public ReadOnlySpan<int> Labels(int example) => _labels.AsSpan((int)_offsets[example], Length(example));
    public int Length(int example) => (int)(_offsets[example + 1] - _offsets[example]);

    public static TokenizedDataset Read(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        var magic = reader.ReadBytes(8);
        if (!magic.AsSpan().SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: not a tokenized dataset (bad magic)");
        var version = reader.ReadUInt32();
        if (version != FormatVersion)
            throw new InvalidDataException($"{path}: tokenized dataset format {version} is not supported (expected " +
            $"{FormatVersion})");
        var count = reader.ReadUInt32();
        var tokens = reader.ReadUInt64();
        var offsets = new long[count + 1];
        ReadExactly(stream, MemoryMarshal.AsBytes(offsets.AsSpan()));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        if (offsets[0] != 0 || (ulong)offsets[^1] != tokens)
            throw new InvalidDataException($"{path}: offsets do not cover the tokens");
        var ids = new int[tokens];
        var labels = new int[tokens];
        ReadExactly(stream, MemoryMarshal.AsBytes(ids.AsSpan()));
        ReadExactly(stream, MemoryMarshal.AsBytes(labels.AsSpan()));
        return new TokenizedDataset(offsets, ids, labels);
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer)
    {
        try { stream.ReadExactly(buffer); }
        catch (EndOfStreamException) { throw new InvalidDataException("tokenized dataset is truncated"); }
    }

    /// <summary>Appends examples in memory, then writes the file in one go.</summary>
    public sealed class Builder
    {
        private readonly List<long> _offsets = [0];
        private readonly List<int> _ids = [];
        private readonly List<int> _labels = [];

        public int Count => _offsets.Count - 1;

        public void Add(ReadOnlySpan<int> ids, ReadOnlySpan<int> labels)
        {
            if (ids.Length != labels.Length) throw new ArgumentException("ids and labels differ in length");
            foreach (var id in ids) _ids.Add(id);
            foreach (var label in labels) _labels.Add(label);
            _offsets.Add(_ids.Count);
        }

        public TokenizedDataset Build() => new([.. _offsets], [.. _ids], [.. _labels]);

        public void Write(string path)
        {
            using var stream = File.Create(path);
            Span<byte> header = stackalloc byte[24];
            Magic.CopyTo(header);
            BinaryPrimitives.WriteUInt32LittleEndian(header[8..], FormatVersion);
            BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)Count);
            BinaryPrimitives.WriteUInt64LittleEndian(header[16..], (ulong)_ids.Count);
            stream.Write(header);
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(_offsets)));
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(_ids)));
            stream.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(_labels)));
        }
    }
}
