using System.Text.Json;

namespace FineTune.Tokenizers;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> run the way the Rust <c>tokenizers</c> library runs it, id for id: added
/// tokens are split out of the raw text, each remaining piece is normalized, cut by the pre-tokenizer and encoded by
/// the BPE model, then the post-processor adds its special tokens. Covers byte-level BPE (GPT-2, Llama 3, Qwen) and
/// SentencePiece-style BPE with byte fallback (Llama 2, Mistral). truncation and padding settings are ignored:
/// callers decide lengths.
/// </summary>
public sealed class HfTokenizer
{
    private readonly HfNormalizer? _normalizer;
    private readonly HfPreTokenizer? _preTokenizer;
    private readonly HfBpe _model;
    private readonly HfDecoder? _decoder;
    private readonly AddedTokenMatcher _rawAdded;
    private readonly AddedTokenMatcher _normalizedAdded;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly string?[] _tokenOfId;
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;
    private readonly bool _trimOffsets;
    private readonly bool _trimKeepsPrefixSpace;

    private HfTokenizer(JsonElement root)
    {
        _normalizer = HfNormalizer.Read(root.Prop("normalizer"));
        _preTokenizer = HfPreTokenizer.Read(root.Prop("pre_tokenizer"));
        _model = new HfBpe(root.GetProperty("model"));
        _decoder = HfDecoder.Read(root.Prop("decoder"));

        var added = new List<AddedToken>();
        if (root.Prop("added_tokens") is { ValueKind: JsonValueKind.Array } list)
            foreach (var token in list.EnumerateArray())
            {
                var special = token.Flag("special");
                var content = token.GetProperty("content").GetString()!;
                added.Add(new AddedToken(CheckedId(token.GetProperty("id").GetInt32(), content), content,
                    special,
                    token.Flag("single_word"), token.Flag("lstrip"), token.Flag("rstrip"),
                        token.Flag("normalized", fallback: !special)));
            }
        AddedTokens = added;
        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        _addedById = [];
        foreach (var token in added) { _addedByContent[token.Content] = token; _addedById[token.Id] = token; }
        // Without a normalizer, "normalized" tokens would match the same text anyway; matching them raw is equivalent.
        _rawAdded = new AddedTokenMatcher(added.Where(t => !t.Normalized || _normalizer is null));
        _normalizedAdded = new AddedTokenMatcher(added.Where(t => t.Normalized && _normalizer is not null));

        VocabSize = Math.Max(_model.Vocab.Values.DefaultIfEmpty(-1).Max(),
            added.Select(t => t.Id).DefaultIfEmpty(-1).Max()) + 1;
        _tokenOfId = new string?[VocabSize];
        foreach (var (token, id) in _model.Vocab) _tokenOfId[id] = token;
        foreach (var token in added) _tokenOfId[token.Id] = token.Content;

        var prefix = new List<int>();
        var suffix = new List<int>();
        ReadPostProcessor(root.Prop("post_processor"), prefix, suffix, ref _trimOffsets, ref _trimKeepsPrefixSpace);
        _prefixIds = [.. prefix];
        _suffixIds = [.. suffix];
    }

    /// <summary>The largest tokenizer.json read: published ones are tens of MB; the cap keeps a hostile or
    /// mistaken file from being read whole into memory.</summary>
    public const long MaxFileBytes = 256L << 20;

    /// <summary>Ids above this are refused: real vocabularies hold under a million tokens, and the id table is
    /// allocated by the largest id, so one absurd id would allocate gigabytes.</summary>
    public const int MaxTokenId = (1 << 24) - 1;

    internal static int CheckedId(int id, string token) => id is >= 0 and <= MaxTokenId ? id
        : throw new FormatException($"token '{Shorten(token)}' has id {id}, outside 0..{MaxTokenId}");

    private static string Shorten(string token) => token.Length <= 40 ? token : token[..40] + "...";

    /// <summary>Refuses a file over <see cref="MaxFileBytes"/> before reading it.</summary>
    public static void CheckFileSize(string tokenizerJsonPath)
    {
        long length;
        try { length = new FileInfo(tokenizerJsonPath).Length; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerJsonException($"tokenizer.json could not be read: {e.Message}", tokenizerJsonPath);
        }
        if (length > MaxFileBytes)
            throw new TokenizerJsonException($"tokenizer.json is {length} bytes, more than the {MaxFileBytes} read",
                tokenizerJsonPath);
    }

    /// <summary>Reads a tokenizer.json file; a file that cannot be read or used throws
    /// <see cref="TokenizerJsonException"/>.</summary>
    public static HfTokenizer Load(string tokenizerJsonPath)
    {
        CheckFileSize(tokenizerJsonPath);
        string json;
        try { json = File.ReadAllText(tokenizerJsonPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerJsonException($"tokenizer.json could not be read: {e.Message}", tokenizerJsonPath);
        }
        return FromJson(json, tokenizerJsonPath);
    }

    /// <param name="origin">The file (or other source) named in errors.</param>
    public static HfTokenizer FromJson(string json, string origin)
    {
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
            return new HfTokenizer(document.RootElement);
        }
        catch (JsonException e)
        {
            throw new TokenizerJsonException($"tokenizer.json is not valid JSON: {e.Message}", origin);
        }
        catch (HfComponentException e)
        {
            throw new TokenizerJsonException(
                $"unsupported tokenizer.json: {e.Message}. Supported: BPE models (byte-level like GPT-2/Llama " +
                    $"3/Qwen, or SentencePiece-style with byte_fallback like Llama 2/Mistral).", origin);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new TokenizerJsonException($"tokenizer.json is malformed: {e.Message}", origin);
        }
    }

    /// <summary>Largest id + 1 (model vocabulary and added tokens).</summary>
    public int VocabSize { get; }
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>Ids the post-processor puts before the text when addSpecialTokens is true (Llama's BOS), in
    /// order.</summary>
    public IReadOnlyList<int> BosIds => _prefixIds;

    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var added) ? added.Id : _model.Vocab.TryGetValue(token, out var id) ? id
            : null;

    public string? IdToToken(int id) => id >= 0 && id < _tokenOfId.Length ? _tokenOfId[id] : null;

    public TokenEncoding Encode(string text, bool addSpecialTokens = false)
    {
        var ids = new List<int>(text.Length / 2 + 4);
        var offsets = new List<(int Start, int End)>(ids.Capacity);
        var input = new AlignedText(text, 0);
        var pieces = new List<PreToken>();
        foreach (var (start, end, token) in _rawAdded.Split(text, 0, text.Length))
        {
            if (token is not null) { ids.Add(token.Id); offsets.Add((start, end)); continue; }
            var normalized = _normalizer is null ? input : _normalizer.Apply(new AlignedText(text[start..end], start));
            var (from, to) = _normalizer is null ? (start, end) : (0, normalized.Text.Length);
            foreach (var (pieceStart, pieceEnd, normalizedToken) in _normalizedAdded.Split(normalized.Text, from, to))
            {
                if (normalizedToken is not null)
                    { ids.Add(normalizedToken.Id); offsets.Add(normalized.Original(pieceStart, pieceEnd)); continue; }
                pieces.Clear();
                var piece = new PreToken(normalized, pieceStart, pieceEnd - pieceStart);
                if (_preTokenizer is null) pieces.Add(piece);
                else _preTokenizer.Split(piece, pieces);
                var mapsBytes = _preTokenizer?.MapsBytes ?? false;
                foreach (var preToken in pieces) _model.Encode(preToken, mapsBytes, ids, offsets);
            }
        }
        if (_trimOffsets) TrimOffsets(ids, offsets);
        if (addSpecialTokens && (_prefixIds.Length > 0 || _suffixIds.Length > 0))
        {
            ids.InsertRange(0, _prefixIds);
            offsets.InsertRange(0, _prefixIds.Select(_ => (0, 0)));
            ids.AddRange(_suffixIds);
            offsets.AddRange(_suffixIds.Select(_ => (0, 0)));
        }
        return new TokenEncoding([.. ids], [.. offsets]);
    }

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = true)
    {
        var tokens = new List<string>(ids.Count);
        foreach (var id in ids)
        {
            if (_addedById.TryGetValue(id, out var added) && added.Special && skipSpecialTokens) continue;
            if (IdToToken(id) is { } token) tokens.Add(token);
        }
        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.Decode(tokens));
    }

    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);

    /// <summary>ByteLevel's trim_offsets: a token's offsets leave out its leading and trailing spaces.</summary>
    private void TrimOffsets(List<int> ids, List<(int Start, int End)> offsets)
    {
        var space = ByteLevelAlphabet.CharOfByte[' '];
        for (var i = 0; i < ids.Count; i++)
        {
            var token = IdToToken(ids[i]);
            if (token is null) continue;
            var leading = 0;
            while (leading < token.Length && (token[leading] == space || char.IsWhiteSpace(token[leading]))) leading++;
            var trailing = 0;
            while (trailing < token.Length - leading
                && (token[^(trailing + 1)] == space || char.IsWhiteSpace(token[^(trailing + 1)]))) trailing++;
            var (start, end) = offsets[i];
            if (leading > 0)
            {
                if ((i == 0 || start == 0) && _trimKeepsPrefixSpace && leading == 1) leading = 0;
                start = Math.Min(start + leading, end);
            }
            if (trailing > 0 && end >= trailing) end = Math.Max(end - trailing, start);
            offsets[i] = (start, end);
        }
    }

    private static void ReadPostProcessor(JsonElement json, List<int> prefix, List<int> suffix, ref bool trimOffsets,
        ref bool keepsPrefixSpace)
    {
        if (json.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined) return;
        var type = json.Str("type");
        switch (type)
        {
            case "ByteLevel":
                if (json.Flag("trim_offsets", fallback: true))
                    { trimOffsets = true; keepsPrefixSpace = json.Flag("add_prefix_space", fallback: true); }
                return;
            case "Sequence":
                foreach (var step in json.GetProperty("processors").EnumerateArray())
                    ReadPostProcessor(step, prefix, suffix, ref trimOffsets, ref keepsPrefixSpace);
                return;
            case "TemplateProcessing":
                var specials = json.Prop("special_tokens");
                var seenSequence = false;
                foreach (var item in json.GetProperty("single").EnumerateArray())
                {
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    var name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
                    if (!specials.TryGetProperty(name, out var special))
                        throw new HfComponentException($"post_processor TemplateProcessing names special token " +
                            $"'{name}' that special_tokens does not define");
                    foreach (var id in special.GetProperty("ids").EnumerateArray())
                        (seenSequence ? suffix : prefix).Add(id.GetInt32());
                }
                return;
            default:
                throw new HfComponentException($"post_processor '{type}' is not supported");
        }
    }
}
