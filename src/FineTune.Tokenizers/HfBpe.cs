using System.Buffers;
using System.Text;
using System.Text.Json;

namespace FineTune.Tokenizers;

/// <summary>
/// Hugging Face's BPE model: a word starts as one symbol per character (per byte for byte-level vocabularies, or
/// per &lt;0xAB&gt; token where byte_fallback covers an unknown character), then the adjacent pair with the lowest
/// merge rank is merged, leftmost first, until no pair has a merge. Results are cached per word.
/// </summary>
internal sealed class HfBpe
{
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 500_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly PairTable _merges; // (left << 32 | right) -> (rank << 32 | merged id)
    private readonly int[] _idOfChar; // ids of one-character tokens, by UTF-16 unit (-1: none); most lookups are these
    private readonly int? _unknownId;
    private readonly bool _fuseUnknown;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteFallbackIds;
    // A plain dictionary behind a lock: ConcurrentDictionary's inserts cost more than the whole BPE of a short word.
    private readonly Dictionary<string, Word> _cache = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Word>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private readonly Lock _cacheLock = new();

    /// <summary>One encoded word: for each token its id and the [start, end) model characters it covers, packed by
    /// threes.</summary>
    private sealed record Word(int[] Packed);

    public HfBpe(JsonElement model)
    {
        var type = model.Str("type");
        if (type != "BPE") throw new HfComponentException($"model '{type}' is not supported (only BPE)");
        if (model.Prop("dropout").ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
            && model.GetProperty("dropout").GetDouble() != 0)
            throw new HfComponentException("model BPE with dropout is not supported");
        if (!string.IsNullOrEmpty(model.Str("continuing_subword_prefix"))
            || !string.IsNullOrEmpty(model.Str("end_of_word_suffix")))
            throw new HfComponentException("model BPE with continuing_subword_prefix or end_of_word_suffix is not " +
                "supported");

        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject())
            _vocab[entry.Name] = HfTokenizer.CheckedId(entry.Value.GetInt32(), entry.Name);
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        _idOfChar = new int[char.MaxValue + 1];
        Array.Fill(_idOfChar, -1);
        foreach (var (token, id) in _vocab)
            if (token.Length == 1) _idOfChar[token[0]] = id;

        var rank = 0L;
        var mergeCount = model.TryGetProperty("merges", out var merges) ? merges.GetArrayLength() : 0;
        _merges = new PairTable(mergeCount);
        if (mergeCount > 0)
            foreach (var merge in merges.EnumerateArray())
            {
                string left, right;
                if (merge.ValueKind == JsonValueKind.Array)
                {
                    if (merge.GetArrayLength() != 2)
                        throw new HfComponentException($"merge {merge.GetRawText()} is not a pair of tokens");
                    (left, right) = (merge[0].GetString()!, merge[1].GetString()!);
                }
                else
                {
                    var parts = merge.GetString()!.Split(' ');
                    if (parts.Length != 2)
                        throw new HfComponentException($"merge '{merge.GetString()}' is not two tokens separated by " +
                            $"one space");
                    (left, right) = (parts[0], parts[1]);
                }
                if (!_vocab.TryGetValue(left, out var leftId) || !_vocab.TryGetValue(right, out var rightId)
                    || !_vocab.TryGetValue(left + right, out var mergedId))
                    throw new HfComponentException(
                        $"merge '{left} {right}' uses a token that is not in the vocabulary");
                // the first rank of a pair wins, as in Hugging Face
                _merges.TryAdd((long)leftId << 32 | (uint)rightId, rank++ << 32 | (uint)mergedId);
            }

        if (model.Str("unk_token") is { } unknown && _vocab.TryGetValue(unknown, out var unknownId))
            _unknownId = unknownId;
        _fuseUnknown = model.Flag("fuse_unk");
        _ignoreMerges = model.Flag("ignore_merges");
        if (model.Flag("byte_fallback"))
        {
            _byteFallbackIds = new int[256];
            for (var b = 0; b < 256; b++) _byteFallbackIds[b] = _vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    /// <summary>
    /// Open-addressing hash table of merge pairs: the lookup of every BPE step, several times faster than a
    /// Dictionary (and long's own hash, left ^ right, would pile the merges of small ids into few buckets).
    /// </summary>
    private sealed class PairTable
    {
        private readonly long[] _keys;
        private readonly long[] _values;
        private readonly int _mask;

        public PairTable(int count)
        {
            var capacity = 16;
            while (capacity < count * 2) capacity *= 2;
            _keys = new long[capacity];
            Array.Fill(_keys, -1L); // ids are never negative, so -1 marks a free slot
            _values = new long[capacity];
            _mask = capacity - 1;
        }

        private int Slot(long key) => (int)((ulong)key * 0x9E3779B97F4A7C15UL >> 40) & _mask;

        public void TryAdd(long key, long value)
        {
            var slot = Slot(key);
            while (_keys[slot] != -1L)
            {
                if (_keys[slot] == key) return;
                slot = (slot + 1) & _mask;
            }
            _keys[slot] = key;
            _values[slot] = value;
        }

        public bool TryGetValue(long key, out long value)
        {
            for (var slot = Slot(key); _keys[slot] != -1L; slot = (slot + 1) & _mask)
                if (_keys[slot] == key) { value = _values[slot]; return true; }
            value = 0;
            return false;
        }
    }

    /// <summary>
    /// Encodes one pre-token, appending ids and offsets in the original input. With <paramref name="mapsBytes"/>
    /// (byte-level vocabularies) the model sees each UTF-8 byte as its GPT-2 character.
    /// </summary>
    public void Encode(PreToken token, bool mapsBytes, List<int> ids, List<(int Start, int End)> offsets)
    {
        var span = token.Span;
        var capacity = mapsBytes ? span.Length * 3 : span.Length;
        char[]? rentedChars = null;
        int[]? rentedSource = null;
        Span<char> chars = capacity <= 256 ? stackalloc char[capacity]
            : (rentedChars = ArrayPool<char>.Shared.Rent(capacity));
        // For each model character, the unit of the pre-token its character starts at and the unit after it ends.
        Span<int> sourceStart = capacity <= 256 ? stackalloc int[capacity]
            : (rentedSource = ArrayPool<int>.Shared.Rent(capacity * 2)).AsSpan(0, capacity);
        Span<int> sourceEnd = capacity <= 256 ? stackalloc int[capacity] : rentedSource!.AsSpan(capacity, capacity);
        var length = 0;
        if (mapsBytes)
        {
            Span<byte> utf8 = stackalloc byte[4];
            for (var i = 0; i < span.Length;)
            {
                var status = Rune.DecodeFromUtf16(span[i..], out var rune, out var consumed);
                if (status != OperationStatus.Done) { rune = Rune.ReplacementChar; consumed = 1; }
                var bytes = rune.EncodeToUtf8(utf8);
                for (var b = 0; b < bytes; b++)
                {
                    chars[length] = ByteLevelAlphabet.CharOfByte[utf8[b]];
                    sourceStart[length] = i;
                    sourceEnd[length++] = i + consumed;
                }
                i += consumed;
            }
        }
        else
        {
            span.CopyTo(chars);
            for (var i = 0; i < span.Length; i++) { sourceStart[i] = i; sourceEnd[i] = i + 1; }
            length = span.Length;
        }

        var word = chars[..length];
        Word? encoded;
        lock (_cacheLock) _cacheBySpan.TryGetValue(word, out encoded);
        if (encoded is null)
        {
            encoded = EncodeWord(word);
            if (length <= MaxCachedWordLength)
                lock (_cacheLock)
                    if (_cache.Count < MaxCacheEntries) _cacheBySpan.TryAdd(word, encoded);
        }
        var packed = encoded.Packed;
        for (var k = 0; k < packed.Length; k += 3)
        {
            ids.Add(packed[k]);
            var first = packed[k + 1];
            var last = packed[k + 2] - 1;
            offsets.Add((token.Source.OriginalStart(token.Start + sourceStart[first]),
                token.Source.OriginalEnd(token.Start + sourceEnd[last] - 1)));
        }
        if (rentedChars is not null) ArrayPool<char>.Shared.Return(rentedChars);
        if (rentedSource is not null) ArrayPool<int>.Shared.Return(rentedSource);
    }

    private Word EncodeWord(ReadOnlySpan<char> word)
    {
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out var whole)) return new Word([whole, 0, word.Length]);

        // At most 3 symbols per UTF-16 unit (a BMP character's UTF-8 bytes through byte fallback).
        var capacity = word.Length * 3;
        int[]? rented = null;
        var buffer = capacity <= 128 ? stackalloc int[capacity * 3]
            : (rented = ArrayPool<int>.Shared.Rent(capacity * 3)).AsSpan(0, capacity * 3);
        var ids = buffer[..capacity];
        var starts = buffer.Slice(capacity, capacity);
        var ends = buffer.Slice(capacity * 2, capacity);
        var count = 0;
        int unknownStart = -1, unknownEnd = -1; // an unknown run not yet emitted (fuse_unk grows it)
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < word.Length;)
        {
            var width = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2
                : 1;
            var character = word.Slice(i, width);
            var id = width == 1 ? _idOfChar[character[0]] : -1;
            if (id >= 0 || (width == 2 && _vocabBySpan.TryGetValue(character, out id)))
                { FlushUnknown(ids, starts, ends); Add(ids, starts, ends, id, i, i + width); }
            else if (_byteFallbackIds is not null && ByteTokens(character, utf8) is { } byteCount)
            {
                FlushUnknown(ids, starts, ends);
                for (var b = 0; b < byteCount; b++) Add(ids, starts, ends, _byteFallbackIds[utf8[b]], i, i + width);
            }
            else if (_unknownId is not null)
            {
                if (unknownStart >= 0 && _fuseUnknown) unknownEnd = i + width;
                else { FlushUnknown(ids, starts, ends); (unknownStart, unknownEnd) = (i, i + width); }
            }
            i += width;
        }
        FlushUnknown(ids, starts, ends);
        count = Merge(ids, starts, ends, count);
        var packed = new int[count * 3];
        for (var k = 0; k < count; k++)
            { packed[3 * k] = ids[k]; packed[3 * k + 1] = starts[k]; packed[3 * k + 2] = ends[k]; }
        if (rented is not null) ArrayPool<int>.Shared.Return(rented);
        return new Word(packed);

        void Add(Span<int> ids, Span<int> starts, Span<int> ends, int id, int start, int end)
        {
            ids[count] = id; starts[count] = start; ends[count] = end;
            count++;
        }
        void FlushUnknown(Span<int> ids, Span<int> starts, Span<int> ends)
        {
            if (unknownStart >= 0) Add(ids, starts, ends, _unknownId!.Value, unknownStart, unknownEnd);
            unknownStart = -1;
        }
    }

    /// <summary>The number of UTF-8 bytes of the character when every one has a &lt;0xAB&gt; token, else
    /// null.</summary>
    private int? ByteTokens(ReadOnlySpan<char> character, Span<byte> utf8)
    {
        var count = Encoding.UTF8.GetBytes(character, utf8);
        for (var b = 0; b < count; b++)
            if (_byteFallbackIds![utf8[b]] < 0) return null;
        return count;
    }

    /// <summary>
    /// Merges in place, like Hugging Face's Word::merge_all: a heap of (rank, position) with the merged id; an entry
    /// whose pair has changed since it was pushed is skipped. Returns the new symbol count.
    /// </summary>
    private int Merge(Span<int> ids, Span<int> starts, Span<int> ends, int count)
    {
        if (count < 2) return count;
        // Each merge pushes at most two entries, so the heap never holds more than 3 per symbol.
        var size = count * 6;
        long[]? rentedKeys = null;
        int[]? rentedLinks = null;
        var keys = size <= 384 ? stackalloc long[size]
            : (rentedKeys = ArrayPool<long>.Shared.Rent(size)).AsSpan(0, size);
        var links = size <= 384 ? stackalloc int[size]
            : (rentedLinks = ArrayPool<int>.Shared.Rent(size)).AsSpan(0, size);
        var heap = new PairHeap(keys[..(count * 3)], links[..(count * 3)]);
        var previous = links.Slice(count * 3, count);
        var next = links.Slice(count * 4, count);
        for (var i = 0; i < count; i++) { previous[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; }
        const int Removed = -2;
        for (var i = 0; i + 1 < count; i++) Push(ref heap, ids, next, i);

        while (heap.TryPop(out var position, out var mergedId))
        {
            if (previous[position] == Removed || next[position] < 0) continue;
            var right = next[position];
            if (!_merges.TryGetValue((long)ids[position] << 32 | (uint)ids[right], out var merge)
                || (int)merge != mergedId) continue;
            ids[position] = mergedId;
            ends[position] = ends[right];
            previous[right] = Removed;
            next[position] = next[right];
            if (next[right] >= 0) previous[next[right]] = position;
            if (previous[position] >= 0) Push(ref heap, ids, next, previous[position]);
            Push(ref heap, ids, next, position);
        }

        var write = 0;
        for (var i = 0; i >= 0; i = next[i])
        {
            ids[write] = ids[i]; starts[write] = starts[i]; ends[write] = ends[i];
            write++;
        }
        if (rentedKeys is not null) ArrayPool<long>.Shared.Return(rentedKeys);
        if (rentedLinks is not null) ArrayPool<int>.Shared.Return(rentedLinks);
        return write;
    }

    private void Push(ref PairHeap heap, Span<int> ids, Span<int> next, int position)
    {
        var right = next[position];
        if (right >= 0 && _merges.TryGetValue((long)ids[position] << 32 | (uint)ids[right], out var merge))
            heap.Push((merge >> 32) << 32 | (uint)position, (int)merge);
    }

    /// <summary>A binary min-heap of (rank &lt;&lt; 32 | position) keys, each with the id its merge produces.</summary>
    private ref struct PairHeap(Span<long> keys, Span<int> mergedIds)
    {
        private readonly Span<long> _keys = keys;
        private readonly Span<int> _mergedIds = mergedIds;
        private int _count;

        public void Push(long key, int mergedId)
        {
            var i = _count++;
            while (i > 0)
            {
                var parent = (i - 1) / 2;
                if (_keys[parent] <= key) break;
                _keys[i] = _keys[parent];
                _mergedIds[i] = _mergedIds[parent];
                i = parent;
            }
            _keys[i] = key;
            _mergedIds[i] = mergedId;
        }

        public bool TryPop(out int position, out int mergedId)
        {
            if (_count == 0) { position = mergedId = 0; return false; }
            position = (int)_keys[0];
            mergedId = _mergedIds[0];
            var lastKey = _keys[--_count];
            var lastId = _mergedIds[_count];
            var i = 0;
            while (true)
            {
                var child = 2 * i + 1;
                if (child >= _count) break;
                if (child + 1 < _count && _keys[child + 1] < _keys[child]) child++;
                if (_keys[child] >= lastKey) break;
                _keys[i] = _keys[child];
                _mergedIds[i] = _mergedIds[child];
                i = child;
            }
            _keys[i] = lastKey;
            _mergedIds[i] = lastId;
            return true;
        }
    }
}
