using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using FineTune.Core.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Formats;

/// <summary>
/// One tensor's entry in a safetensors header; offsets are relative to the start of the data section.
/// </summary>
internal sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End)
{
    public ScalarType ScalarType => Safetensors.ScalarTypeOf(Dtype);
    public long ByteSize => End - Begin;
}

/// <summary>What the header says of a tensor to be written: its name, dtype and shape.</summary>
internal sealed record SafetensorsLayout(string Name, ScalarType Dtype, long[] Shape)
{
    public long ByteSize => Shape.Aggregate((long)Safetensors.SizeOf(Dtype), (a, b) => a * b);
}

/// <summary>What a safetensors file holds, without its data.</summary>
internal sealed record SafetensorsHeader(IReadOnlyList<SafetensorsEntry> Tensors,
    IReadOnlyDictionary<string, string> Metadata, long DataStart, long FileSize)
{
    public SafetensorsEntry? this[string name] => Tensors.FirstOrDefault(t => t.Name == name);
}

/// <summary>
/// Reader and writer of the standard safetensors format, byte-compatible with what Hugging Face's Python library
/// writes: an 8-byte little-endian header length, a JSON header <c>{name: {dtype, shape, data_offsets}}</c> with
/// <c>__metadata__</c>, padded with spaces so the data starts at a multiple of 8, then every tensor's bytes back to
/// back. Tensors are read straight from the file into their own memory, so loading a model needs no second copy.
/// </summary>
internal static class Safetensors
{
    public const string FormatCode = DiagnosticCodes.InvalidSafetensors;

    // The Python library refuses larger headers too; it keeps a corrupt length from allocating gigabytes.
    private const long MaxHeaderBytes = 100_000_000;

    // TorchSharp exposes tensor memory as a Span, which is limited to int.MaxValue bytes; big tensors go in slices.
    private const long ChunkBytes = 1L << 28;

    private static readonly (string Name, ScalarType Type, int Size)[] Dtypes =
    [
        ("F64", ScalarType.Float64, 8), ("F32", ScalarType.Float32, 4), ("BF16", ScalarType.BFloat16, 2),
        ("F16", ScalarType.Float16, 2), ("I64", ScalarType.Int64, 8), ("I32", ScalarType.Int32, 4),
        ("I16", ScalarType.Int16, 2), ("I8", ScalarType.Int8, 1), ("U8", ScalarType.Byte, 1),
        ("BOOL", ScalarType.Bool, 1),
    ];

    public static ScalarType ScalarTypeOf(string dtype)
        => Dtypes.FirstOrDefault(d => d.Name == dtype) is { Name: not null } d ? d.Type
            : throw new ArgumentException($"unknown safetensors dtype '{dtype}'");

    public static string DtypeOf(ScalarType type)
        => Dtypes.FirstOrDefault(d => d.Type == type) is { Name: not null } d ? d.Name
            : throw new ArgumentException($"dtype {type} cannot be stored in safetensors");

    private static int SizeOf(string dtype) => Dtypes.First(d => d.Name == dtype).Size;

    public static int SizeOf(ScalarType type) => Dtypes.FirstOrDefault(d => d.Type == type) is { Name: not null } d
        ? d.Size : throw new ArgumentException($"dtype {type} cannot be stored in safetensors");

    // ---------------------------------------------------------------- writing

    /// <summary>
    /// Writes <paramref name="tensors"/> in sorted key order. <c>__metadata__</c> always carries format=pt (what
    /// transformers checks) plus <paramref name="metadata"/>.
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var layout = tensors.Select(kv => new SafetensorsLayout(kv.Key, kv.Value.dtype, kv.Value.shape)).ToList();
        Write(path, layout, (tensor, stream) => WriteData(stream, tensors[tensor.Name]), metadata);
    }

    /// <summary>
    /// Writes a file whose tensors are produced one at a time, in sorted name order: the header from
    /// <paramref name="tensors"/>' names, dtypes and shapes, then <paramref name="writeData"/> for each, which must write
    /// exactly that tensor's bytes (checked). Nothing needs the whole file's tensors in memory at once.
    /// </summary>
    public static void Write(string path, IReadOnlyList<SafetensorsLayout> tensors,
        Action<SafetensorsLayout, Stream> writeData, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var ordered = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = BuildHeader(ordered, metadata);

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var tensor in ordered)
        {
            var start = stream.Position;
            writeData(tensor, stream);
            if (stream.Position - start != tensor.ByteSize)
                throw new InvalidOperationException($"tensor '{tensor.Name}' wrote {stream.Position - start} bytes; " +
                    $"its dtype and shape take {tensor.ByteSize}");
        }
    }

    /// <summary>A tensor's elements as they lie in memory, written in slices of at most 256 MB (a Span's limit).</summary>
    public static void WriteData(Stream stream, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        var cpu = tensor.detach().cpu().contiguous();
        foreach (var chunk in Chunks(cpu)) stream.Write(chunk.bytes);
    }

    private static byte[] BuildHeader(List<SafetensorsLayout> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            json.WriteString("format", "pt");
            foreach (var (key, value) in (metadata ?? new Dictionary<string, string>()).OrderBy(p => p.Key,
                StringComparer.Ordinal))
                if (key != "format") json.WriteString(key, value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var tensor in tensors)
            {
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", DtypeOf(tensor.Dtype));
                json.WriteStartArray("shape");
                foreach (var dim in tensor.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.ByteSize);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.ByteSize;
            }
            json.WriteEndObject();
        }
        var padding = (int)((8 - buffer.Length % 8) % 8);
        for (var i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    // ---------------------------------------------------------------- reading

    /// <summary>Reads and validates the header only: names, dtypes, shapes, offsets and metadata.</summary>
    public static SafetensorsHeader ReadHeader(string path)
    {
        if (!File.Exists(path)) throw Corrupt(path, "the file does not exist");
        using var stream = File.OpenRead(path);
        return ReadHeader(stream, path);
    }

    /// <summary>
    /// Reads every tensor (or those <paramref name="keep"/> accepts) as CPU tensors of the stored dtype. The caller
    /// owns the tensors.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, Func<string, bool>? keep = null)
    {
        if (!File.Exists(path)) throw Corrupt(path, "the file does not exist");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var header = ReadHeader(stream, path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in header.Tensors)
            {
                if (keep is not null && !keep(entry.Name)) continue;
                var tensor = empty(entry.Shape, entry.ScalarType);
                result[entry.Name] = tensor;
                stream.Position = header.DataStart + entry.Begin;
                foreach (var chunk in Chunks(tensor))
                {
                    try { stream.ReadExactly(chunk.bytes); }
                    catch (EndOfStreamException)
                    {
                        throw Corrupt(path, $"tensor '{entry.Name}' is cut short by the end of the file");
                    }
                }
            }
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>
    /// The slice size for converting writers: a few MB stay in the CPU's cache between the read and the conversion.
    /// </summary>
    public const long SliceBytes = 4 << 20;

    /// <summary>
    /// One tensor of <paramref name="header"/>'s file in slices of whole rows (its first dimension; elements for a
    /// vector; a 0-dimensional tensor is one slice) of about <paramref name="sliceBytes"/> each, read as the
    /// enumeration reaches them and disposed when it moves on: a writer that converts slice by slice never holds the
    /// tensor whole, and converts from memory the cache still holds.
    /// </summary>
    public static IEnumerable<Tensor> ReadRowSlices(string path, SafetensorsHeader header, SafetensorsEntry entry,
        long sliceBytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var scalar = entry.Shape.Length == 0;
        var rows = scalar ? 1 : entry.Shape[0];
        var rowBytes = Math.Max(1, entry.ByteSize / Math.Max(1, rows));
        var rowsPerSlice = Math.Max(1, sliceBytes / rowBytes);
        stream.Position = header.DataStart + entry.Begin;
        for (long first = 0; first < rows; first += rowsPerSlice)
        {
            long[] shape = scalar ? [] : [Math.Min(rowsPerSlice, rows - first), .. entry.Shape[1..]];
            using var slice = empty(shape, entry.ScalarType);
            foreach (var chunk in Chunks(slice))
            {
                try { stream.ReadExactly(chunk.bytes); }
                catch (EndOfStreamException)
                {
                    throw Corrupt(path, $"tensor '{entry.Name}' is cut short by the end of the file");
                }
            }
            yield return slice;
        }
    }

    private static IEnumerable<Tensor> Chunks(Tensor contiguous)
    {
        var count = contiguous.numel();
        if (count == 0) yield break;
        using var flat = contiguous.view(-1);
        var perChunk = Math.Max(1, ChunkBytes / contiguous.ElementSize);
        for (long start = 0; start < count; start += perChunk)
        {
            using var slice = flat.narrow(0, start, Math.Min(perChunk, count - start));
            yield return slice;
        }
    }

    private static SafetensorsHeader ReadHeader(FileStream stream, string path)
    {
        var fileSize = stream.Length;
        if (fileSize < 8) throw Corrupt(path, $"the file is {fileSize} bytes, too short for the 8-byte header length");
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileSize - 8))
            throw Corrupt(path, $"the header length {headerLength} runs past the end of the file ({fileSize} bytes)");
        if (headerLength > MaxHeaderBytes)
            throw Corrupt(path, $"the header length {headerLength} is larger than the {MaxHeaderBytes} bytes allowed");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        var dataStart = 8 + (long)headerLength;
        var dataLength = fileSize - dataStart;

        // JsonDocument leaves invalid UTF-8 inside strings until a name is read, and then throws outside JsonException.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes)) throw Corrupt(path, "the header is not valid UTF-8");
        JsonDocument document;
        try { document = JsonDocument.Parse(headerBytes); }
        catch (JsonException e) { throw Corrupt(path, $"the header is not valid JSON ({e.Message})"); }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Corrupt(path, "the header is not a JSON object");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<SafetensorsEntry>();
            // Reading a name or string that escapes half a surrogate pair ("\ud800") throws outside JsonException.
            try
            {
                foreach (var property in document.RootElement.EnumerateObject())
                {
                    if (property.Name == "__metadata__")
                    {
                        if (property.Value.ValueKind != JsonValueKind.Object)
                            throw Corrupt(path, "__metadata__ is not an object");
                        foreach (var m in property.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String
                                ? m.Value.GetString()!
                                : throw Corrupt(path, $"__metadata__ value '{m.Name}' is not a string");
                        continue;
                    }
                    entries.Add(ParseEntry(property, path));
                }
            }
            catch (InvalidOperationException)
            {
                throw Corrupt(path, "the header holds a name or string escaping half a surrogate pair (such as " +
                    "\\ud800), which is not text");
            }

            entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            long expected = 0;
            foreach (var entry in entries)
            {
                if (entry.End > dataLength)
                    throw Corrupt(path,
                        $"tensor '{entry.Name}' ends at byte {entry.End} of the data, past its end ({dataLength} " +
                        $"bytes)");
                if (entry.Begin != expected)
                    throw Corrupt(path, entry.Begin < expected
                        ? $"tensor '{entry.Name}' overlaps the tensor before it (starts at {entry.Begin}, expected " +
                            $"{expected})"
                        : $"tensor '{entry.Name}' leaves a gap before it (starts at {entry.Begin}, expected " +
                            $"{expected})");
                expected = entry.End;
            }
            if (expected != dataLength)
                throw Corrupt(path, $"the tensors cover {expected} bytes but the data section holds {dataLength}");
            return new SafetensorsHeader(entries, metadata, dataStart, fileSize);
        }
    }

    private static SafetensorsEntry ParseEntry(JsonProperty property, string path)
    {
        var name = property.Name;
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object)
            throw Corrupt(path, $"tensor '{name}' is not described by an object");
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Corrupt(path, $"tensor '{name}' has no dtype");
        var dtype = dtypeElement.GetString()!;
        if (!Dtypes.Any(d => d.Name == dtype))
            throw Corrupt(path,
                $"tensor '{name}' has dtype '{dtype}', which is not supported (expected one of " +
                $"{string.Join(", ", Dtypes.Select(d => d.Name))})");

        long[] Longs(string key)
        {
            if (!value.TryGetProperty(key, out var array) || array.ValueKind != JsonValueKind.Array)
                throw Corrupt(path, $"tensor '{name}' has no '{key}' array");
            return array.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out var n)
                    && n >= 0
                ? n
                : throw Corrupt(path,
                    $"tensor '{name}' has a '{key}' value that is not a non-negative integer")).ToArray();
        }

        var shape = Longs("shape");
        var offsets = Longs("data_offsets");
        if (offsets.Length != 2) throw Corrupt(path, $"tensor '{name}' has {offsets.Length} data_offsets (expected 2)");
        if (offsets[1] < offsets[0])
            throw Corrupt(path, $"tensor '{name}' ends (byte {offsets[1]}) before it begins (byte {offsets[0]})");

        // The shape comes from the file: its product, and that times the element size, must not wrap around.
        long expectedBytes = SizeOf(dtype);
        try { foreach (var dim in shape) expectedBytes = checked(expectedBytes * dim); }
        catch (OverflowException) { throw Corrupt(path, $"tensor '{name}' has a shape too large to address"); }
        if (offsets[1] - offsets[0] != expectedBytes)
            throw Corrupt(path,
                $"tensor '{name}' spans {offsets[1] - offsets[0]} bytes but shape [{string.Join(", ", shape)}] of " +
                $"{dtype} needs {expectedBytes}");
        return new SafetensorsEntry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static FineTuneException Corrupt(string path, string message)
        => new(Diagnostic.Error(FormatCode, $"not a valid safetensors file: {message}", path), ExitCodes.StageFailed);
}
