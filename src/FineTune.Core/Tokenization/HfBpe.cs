using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace FineTune.Core.Tokenization;

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
    private readonly Dictionary<long, long> _merges; // (left << 32 | right) -> (rank << 32 | merged id)
    private readonly int? _unknownId;
    private readonly bool _fuseUnknown;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteFallbackIds;
    private readonly ConcurrentDictionary<string, Word> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Word>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    /// <summary>One encoded word: token ids and the [start, end) model characters each covers.</summary>
    private sealed record Word(int[] Ids, int[] Starts, int[] Ends);

    public HfBpe(JsonElement model)
    {
        var type = model.Str("type");
        if (type != "BPE") throw new HfComponentException($"model '{type}' is not supported (only BPE)");
        if (model.Prop("dropout").ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined) && model.GetProperty("dropout").GetDouble() != 0)
            throw new HfComponentException("model BPE with dropout is not supported");
        if (!string.IsNullOrEmpty(model.Str("continuing_subword_prefix")) || !string.IsNullOrEmpty(model.Str("end_of_word_suffix")))
            throw new HfComponentException("model BPE with continuing_subword_prefix or end_of_word_suffix is not supported");

        _vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) _vocab[entry.Name] = entry.Value.GetInt32();
        _vocabBySpan = _vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        _merges = new Dictionary<long, long>();
        var rank = 0L;
        if (model.TryGetProperty("merges", out var merges))
            foreach (var merge in merges.EnumerateArray())
            {
                string left, right;
                if (merge.ValueKind == JsonValueKind.Array) (left, right) = (merge[0].GetString()!, merge[1].GetString()!);
                else
                {
                    var parts = merge.GetString()!.Split(' ');
                    if (parts.Length != 2) throw new HfComponentException($"merge '{merge.GetString()}' is not two tokens separated by one space");
                    (left, right) = (parts[0], parts[1]);
                }
                if (!_vocab.TryGetValue(left, out var leftId) || !_vocab.TryGetValue(right, out var rightId) || !_vocab.TryGetValue(left + right, out var mergedId))
                    throw new HfComponentException($"merge '{left} {right}' uses a token that is not in the vocabulary");
                _merges.TryAdd((long)leftId << 32 | (uint)rightId, rank++ << 32 | (uint)mergedId);
            }

        if (model.Str("unk_token") is { } unknown && _vocab.TryGetValue(unknown, out var unknownId)) _unknownId = unknownId;
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
    /// Encodes one pre-token, appending ids and offsets in the original input. With <paramref name="mapsBytes"/>
    /// (byte-level vocabularies) the model sees each UTF-8 byte as its GPT-2 character.
    /// </summary>
    public void Encode(PreToken token, bool mapsBytes, List<int> ids, List<(int Start, int End)> offsets)
    {
        var span = token.Span;
        var capacity = mapsBytes ? span.Length * 3 : span.Length;
        char[]? rentedChars = null;
        int[]? rentedSource = null;
        Span<char> chars = capacity <= 256 ? stackalloc char[capacity] : (rentedChars = ArrayPool<char>.Shared.Rent(capacity));
        // For each model character, the unit of the pre-token its character starts at and the unit after it ends.
        Span<int> sourceStart = capacity <= 256 ? stackalloc int[capacity] : (rentedSource = ArrayPool<int>.Shared.Rent(capacity * 2)).AsSpan(0, capacity);
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
        if (!_cacheBySpan.TryGetValue(word, out var encoded))
        {
            encoded = EncodeWord(word);
            if (length <= MaxCachedWordLength && _cache.Count < MaxCacheEntries) _cacheBySpan.TryAdd(word, encoded);
        }
        for (var k = 0; k < encoded.Ids.Length; k++)
        {
            ids.Add(encoded.Ids[k]);
            var first = encoded.Starts[k];
            var last = encoded.Ends[k] - 1;
            offsets.Add((token.Source.OriginalStart(token.Start + sourceStart[first]), token.Source.OriginalEnd(token.Start + sourceEnd[last] - 1)));
        }
        if (rentedChars is not null) ArrayPool<char>.Shared.Return(rentedChars);
        if (rentedSource is not null) ArrayPool<int>.Shared.Return(rentedSource);
    }

    private Word EncodeWord(ReadOnlySpan<char> word)
    {
        if (_ignoreMerges && _vocabBySpan.TryGetValue(word, out var whole)) return new Word([whole], [0], [word.Length]);

        var symbolIds = new List<int>(word.Length);
        var starts = new List<int>(word.Length);
        var ends = new List<int>(word.Length);
        (int Id, int Start, int End)? pendingUnknown = null;
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < word.Length;)
        {
            var width = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var character = word.Slice(i, width);
            if (_vocabBySpan.TryGetValue(character, out var id)) { FlushUnknown(); Add(id, i, i + width); }
            else if (_byteFallbackIds is not null && ByteTokens(character, utf8) is { } byteCount)
            {
                FlushUnknown();
                for (var b = 0; b < byteCount; b++) Add(_byteFallbackIds[utf8[b]], i, i + width);
            }
            else if (_unknownId is { } unknownId)
            {
                if (pendingUnknown is { } open && _fuseUnknown) pendingUnknown = open with { End = i + width };
                else { FlushUnknown(); pendingUnknown = (unknownId, i, i + width); }
            }
            i += width;
        }
        FlushUnknown();
        Merge(symbolIds, starts, ends);
        return new Word([.. symbolIds], [.. starts], [.. ends]);

        void Add(int id, int start, int end) { symbolIds.Add(id); starts.Add(start); ends.Add(end); }
        void FlushUnknown()
        {
            if (pendingUnknown is { } open) Add(open.Id, open.Start, open.End);
            pendingUnknown = null;
        }
    }

    /// <summary>The number of UTF-8 bytes of the character when every one has a &lt;0xAB&gt; token, else null.</summary>
    private int? ByteTokens(ReadOnlySpan<char> character, Span<byte> utf8)
    {
        var count = Encoding.UTF8.GetBytes(character, utf8);
        for (var b = 0; b < count; b++)
            if (_byteFallbackIds![utf8[b]] < 0) return null;
        return count;
    }

    /// <summary>Merges in place, like Hugging Face's Word::merge_all: a heap of (rank, position), stale entries skipped.</summary>
    private void Merge(List<int> ids, List<int> starts, List<int> ends)
    {
        var count = ids.Count;
        if (count < 2) return;
        var previous = new int[count];
        var next = new int[count];
        var alive = new bool[count];
        for (var i = 0; i < count; i++) { previous[i] = i - 1; next[i] = i + 1 < count ? i + 1 : -1; alive[i] = true; }
        var queue = new PriorityQueue<long, long>(count);
        for (var i = 0; i + 1 < count; i++) Push(i);

        while (queue.TryDequeue(out var entry, out _))
        {
            var position = (int)(entry >> 32);
            var mergedId = (int)entry;
            if (!alive[position] || next[position] < 0) continue;
            var right = next[position];
            if (!_merges.TryGetValue((long)ids[position] << 32 | (uint)ids[right], out var merge) || (int)merge != mergedId) continue;
            ids[position] = mergedId;
            ends[position] = ends[right];
            alive[right] = false;
            next[position] = next[right];
            if (next[right] >= 0) previous[next[right]] = position;
            if (previous[position] >= 0) Push(previous[position]);
            Push(position);
        }

        var write = 0;
        for (var i = 0; i >= 0; i = next[i])
        {
            ids[write] = ids[i]; starts[write] = starts[i]; ends[write] = ends[i];
            write++;
        }
        ids.RemoveRange(write, count - write);
        starts.RemoveRange(write, count - write);
        ends.RemoveRange(write, count - write);

        void Push(int position)
        {
            var right = next[position];
            if (right < 0 || !_merges.TryGetValue((long)ids[position] << 32 | (uint)ids[right], out var merge)) return;
            queue.Enqueue((long)position << 32 | (uint)(int)merge, (merge >> 32) << 32 | (uint)position);
        }
    }
}
