using System.Buffers.Binary;
using System.Runtime.InteropServices;
using FineTune.Core.Diagnostics;

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

    private const int HeaderBytes = 24;

    /// <summary>
    /// Reads a tokens file. Every size in the header is checked against the file's length before anything is
    /// allocated, so a damaged or hostile file is an error naming it (<see cref="DiagnosticCodes.InvalidTokensFile"/>),
    /// never an overflow or an allocation of what the header claims.
    /// </summary>
    public static TokenizedDataset Read(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        using var stream = File.OpenRead(path);
        var fileSize = stream.Length;
        if (fileSize < HeaderBytes)
            throw Invalid(path, $"the file is {fileSize} bytes, shorter than the {HeaderBytes}-byte header");
        Span<byte> header = stackalloc byte[HeaderBytes];
        stream.ReadExactly(header);
        if (!header[..8].SequenceEqual(Magic)) throw Invalid(path, "it does not start with FTTOKENS");
        var version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version != FormatVersion)
            throw Invalid(path, $"format {version} is not supported (expected {FormatVersion})");
        var count = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        var tokens = BinaryPrimitives.ReadUInt64LittleEndian(header[16..]);
        // In 128 bits nothing a header can claim overflows: 8 (N + 1) + 8 T < 2^68.
        var expected = HeaderBytes + 8 * ((UInt128)count + 1) + 8 * (UInt128)tokens;
        if (expected != (ulong)fileSize)
            throw Invalid(path, $"the header claims {count} examples of {tokens} tokens in all, which take " +
                $"{expected} bytes, but the file holds {fileSize}");
        if (tokens > int.MaxValue)
            throw Invalid(path, $"it holds {tokens} tokens, more than the {int.MaxValue} one file may hold");

        var offsets = new long[count + 1];
        stream.ReadExactly(MemoryMarshal.AsBytes(offsets.AsSpan()));
        if (offsets[0] != 0) throw Invalid(path, $"the first example starts at token {offsets[0]}, not 0");
        for (var i = 1; i < offsets.Length; i++)
            if (offsets[i] < offsets[i - 1] || offsets[i] > (long)tokens)
                throw Invalid(path,
                    $"example {i - 1} ends at token {offsets[i]}, outside {offsets[i - 1]}..{tokens}");
        if (offsets[^1] != (long)tokens)
            throw Invalid(path, $"the examples cover {offsets[^1]} tokens, not the {tokens} the header claims");
        var ids = new int[tokens];
        var labels = new int[tokens];
        stream.ReadExactly(MemoryMarshal.AsBytes(ids.AsSpan()));
        stream.ReadExactly(MemoryMarshal.AsBytes(labels.AsSpan()));
        return new TokenizedDataset(offsets, ids, labels);
    }

    private static FineTuneException Invalid(string path, string why) =>
        new(Diagnostic.Error(DiagnosticCodes.InvalidTokensFile, $"not a valid tokens file: {why}", path),
            ExitCodes.StageFailed);

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
