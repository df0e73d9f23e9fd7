using System.Buffers.Binary;
using System.Text;

namespace FineTune.Torch.Native;

/// <summary>
/// The dynamic symbol table of a 64-bit little-endian ELF shared library (what <c>nm -D</c> lists): the symbols it
/// exports, the ones it imports, and the libraries it names as needed (DT_NEEDED). Reads only the section headers,
/// <c>.dynsym</c>, <c>.dynstr</c> and <c>.dynamic</c>, never the whole (often hundreds of MB) file.
/// </summary>
internal sealed class ElfDynamicSymbols
{
    private const uint ShtDynsym = 11, ShtDynamic = 6;
    private const long DtNeeded = 1;

    public IReadOnlySet<string> Defined { get; }

    /// <summary>Imported symbols the library cannot load without (weak imports left out).</summary>
    public IReadOnlySet<string> Required { get; }

    public IReadOnlyList<string> Needed { get; }

    private ElfDynamicSymbols(HashSet<string> defined, HashSet<string> required, List<string> needed)
    {
        Defined = defined;
        Required = required;
        Needed = needed;
    }

    /// <summary>The table of <paramref name="path"/>; null when it is not a 64-bit little-endian ELF file.</summary>
    public static ElfDynamicSymbols? Read(string path)
    {
        using var file = File.OpenRead(path);
        var header = ReadAt(file, 0, 64);
        if (header.Length < 64 || header[0] != 0x7f || header[1] != 'E' || header[2] != 'L' || header[3] != 'F'
            || header[4] != 2 || header[5] != 1)
            return null;
        var sectionTable = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(0x28));
        int entrySize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x3A));
        int count = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x3C));
        var sections = ReadAt(file, sectionTable, entrySize * count);
        Section At(int index) => new(sections.AsSpan(index * entrySize, entrySize));

        HashSet<string> defined = new(StringComparer.Ordinal), required = new(StringComparer.Ordinal);
        var needed = new List<string>();
        for (var i = 0; i < count; i++)
        {
            var section = At(i);
            if (section.Type == ShtDynsym)
            {
                var strings = ReadAt(file, At((int)section.Link).Offset, (int)At((int)section.Link).Size);
                var symbols = ReadAt(file, section.Offset, (int)section.Size);
                for (var s = 24; s + 24 <= symbols.Length; s += 24)
                {
                    var entry = symbols.AsSpan(s, 24);
                    var name = StringAt(strings, BinaryPrimitives.ReadUInt32LittleEndian(entry));
                    var binding = entry[4] >> 4;
                    var sectionIndex = BinaryPrimitives.ReadUInt16LittleEndian(entry[6..]);
                    if (name.Length == 0 || binding == 0) continue;
                    if (sectionIndex != 0) defined.Add(name);
                    else if (binding != 2) required.Add(name);
                }
            }
            else if (section.Type == ShtDynamic)
            {
                var strings = ReadAt(file, At((int)section.Link).Offset, (int)At((int)section.Link).Size);
                var entries = ReadAt(file, section.Offset, (int)section.Size);
                for (var e = 0; e + 16 <= entries.Length; e += 16)
                    if (BinaryPrimitives.ReadInt64LittleEndian(entries.AsSpan(e)) == DtNeeded)
                        needed.Add(StringAt(strings, (uint)BinaryPrimitives.ReadUInt64LittleEndian(
                            entries.AsSpan(e + 8))));
            }
        }
        return new ElfDynamicSymbols(defined, required, needed);
    }

    private readonly ref struct Section(ReadOnlySpan<byte> header)
    {
        public uint Type { get; } = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        public long Offset { get; } = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x18..]);
        public long Size { get; } = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x20..]);
        public uint Link { get; } = BinaryPrimitives.ReadUInt32LittleEndian(header[0x28..]);
    }

    private static byte[] ReadAt(FileStream file, long offset, int length)
    {
        var buffer = new byte[length];
        file.Position = offset;
        file.ReadAtLeast(buffer, length, throwOnEndOfStream: false);
        return buffer;
    }

    private static string StringAt(byte[] table, uint offset)
    {
        if (offset >= table.Length) return "";
        var end = Array.IndexOf(table, (byte)0, (int)offset);
        return Encoding.ASCII.GetString(table, (int)offset, (end < 0 ? table.Length : end) - (int)offset);
    }
}
