using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace FineTune.Core.Tokenization;

/// <summary>
/// Byte-level BPE the way Hugging Face <c>tokenizers</c> runs it: added tokens are split out of the raw text first,
/// the rest is normalized (NFC when declared), cut by the pre-tokenizer regex, and each piece is BPE-encoded by a
/// Microsoft.ML.Tokenizers model. Doing the split and the regex here (not in the library) tells us which characters
/// every id came from, which is what exact loss masks need.
/// </summary>
internal sealed class ByteLevelBpe
{
    /// <summary>The pre-tokenizer regex of GPT-2 (Hugging Face ByteLevel with use_regex, tiktoken r50k_base).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Tokenizer _model;
    private readonly Regex _pieces;
    private readonly Regex? _addedTokenPattern;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly bool _nfc;

    public ByteLevelBpe(Tokenizer model, string pattern, IReadOnlyList<AddedToken> addedTokens, bool nfc, int largestModelId)
    {
        _model = model;
        _pieces = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        _nfc = nfc;
        AddedTokens = addedTokens;
        _addedByContent = addedTokens.ToDictionary(t => t.Content, StringComparer.Ordinal);
        _addedById = addedTokens.ToDictionary(t => t.Id);
        // Longest first, so "<|im_end|>" wins over any token that is its prefix (regex alternation takes the first match).
        if (addedTokens.Count > 0)
            _addedTokenPattern = new Regex(
                string.Join("|", addedTokens.Select(t => t.Content).OrderByDescending(c => c.Length).Select(Regex.Escape)),
                RegexOptions.Compiled | RegexOptions.CultureInvariant);
        VocabSize = Math.Max(largestModelId, addedTokens.Count == 0 ? -1 : addedTokens.Max(t => t.Id)) + 1;
        Pattern = pattern;
    }

    public string Pattern { get; }
    public bool Nfc => _nfc;
    public IReadOnlyList<AddedToken> AddedTokens { get; }
    public int VocabSize { get; }

    public AddedToken? FindAdded(string content) => _addedByContent.GetValueOrDefault(content);
    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var t) && t.Special;

    /// <summary>
    /// Encodes <paramref name="text"/> and appends the ids; for each id also appends whether it comes (at least in
    /// part) from characters at or after <paramref name="markFrom"/>. Added tokens inside the text are split out.
    /// </summary>
    public void Encode(string text, List<int> ids, List<bool>? marked = null, int markFrom = int.MaxValue)
    {
        var position = 0;
        if (_addedTokenPattern is not null)
        {
            for (var match = _addedTokenPattern.Match(text); match.Success; match = match.NextMatch())
            {
                EncodePlain(text, position, match.Index - position, ids, marked, markFrom);
                ids.Add(_addedByContent[match.Value].Id);
                marked?.Add(match.Index + match.Length > markFrom);
                position = match.Index + match.Length;
            }
        }
        EncodePlain(text, position, text.Length - position, ids, marked, markFrom);
    }

    private void EncodePlain(string text, int start, int length, List<int> ids, List<bool>? marked, int markFrom)
    {
        if (length == 0) return;
        var plain = text.Substring(start, length);
        var boundary = markFrom - start; // in the piece's own coordinates
        if (_nfc && !plain.IsNormalized(NormalizationForm.FormC))
        {
            // NFC never composes across a line break or an ASCII letter, and our mask boundaries follow "\n",
            // so normalizing the two sides separately places the boundary exactly.
            if (boundary > 0 && boundary < plain.Length)
            {
                var head = plain[..boundary].Normalize(NormalizationForm.FormC);
                plain = head + plain[boundary..].Normalize(NormalizationForm.FormC);
                boundary = head.Length;
            }
            else plain = plain.Normalize(NormalizationForm.FormC);
        }
        for (var match = _pieces.Match(plain); match.Success; match = match.NextMatch())
        {
            var pieceIds = _model.EncodeToIds(plain.AsSpan(match.Index, match.Length), considerPreTokenization: false, considerNormalization: false);
            ids.AddRange(pieceIds);
            if (marked is null) continue;
            var isMarked = match.Index + match.Length > boundary;
            for (var i = 0; i < pieceIds.Count; i++) marked.Add(isMarked);
        }
    }

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens)
    {
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                Flush();
                if (!(skipSpecialTokens && added.Special)) text.Append(added.Content);
            }
            else run.Add(id);
        }
        Flush();
        return text.ToString();

        // Decode runs of ordinary ids together: one character's UTF-8 bytes may be spread over several ids.
        void Flush()
        {
            if (run.Count == 0) return;
            text.Append(_model.Decode(run));
            run.Clear();
        }
    }
}
