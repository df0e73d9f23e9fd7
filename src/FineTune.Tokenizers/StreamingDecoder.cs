namespace FineTune.Tokenizers;

/// <summary>
/// Decodes ids one at a time and returns only text that is complete: no half of a UTF-8 character, no byte-fallback
/// bytes still waiting for the rest of their character. Same algorithm as Hugging Face's DecodeStream: a few
/// previous ids are decoded with the new one, so decoders that treat the first token specially (Metaspace) stay right.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private string _prefix = "";
    private int _prefixIndex;

    internal StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>The text that became complete with <paramref name="id"/>; empty while a character is still
    /// partial.</summary>
    public string Push(int id)
    {
        if (_prefix.Length == 0 && _ids.Count > 0)
        {
            var settled = _tokenizer.Decode(_ids, _skipSpecialTokens);
            if (!settled.EndsWith('\uFFFD')) { _prefix = settled; _prefixIndex = _ids.Count; }
        }
        _ids.Add(id);
        var text = _tokenizer.Decode(_ids, _skipSpecialTokens);
        if (text.Length <= _prefix.Length || text.EndsWith('\uFFFD')) return "";
        if (!text.StartsWith(_prefix, StringComparison.Ordinal))
            throw new InvalidOperationException("streaming decode: the decoded text no longer starts with the text " +
                "already returned");
        var fresh = text[_prefix.Length..];
        var newPrefixIndex = _ids.Count - _prefixIndex;
        _ids.RemoveRange(0, _prefixIndex);
        _prefix = _tokenizer.Decode(_ids, _skipSpecialTokens);
        _prefixIndex = newPrefixIndex;
        return fresh;
    }
}
