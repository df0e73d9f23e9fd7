namespace FineTune.Tokenizers;

/// <summary>
/// Finds added tokens in text the way Hugging Face's AddedVocabulary does: leftmost-longest matches, a single_word
/// token only where it is not inside a word, lstrip/rstrip swallowing the whitespace beside the token.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;
    private readonly System.Buffers.SearchValues<char> _firstChars;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0).GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = System.Buffers.SearchValues.Create([.. _byFirstChar.Keys]);
    }

    /// <summary>Splits [start, end) of <paramref name="text"/> into plain pieces (Token null) and added
    /// tokens.</summary>
    public List<(int Start, int End, AddedToken? Token)> Split(string text, int start, int end)
    {
        var parts = new List<(int, int, AddedToken?)>();
        var plainFrom = start;
        var position = start;
        while (position < end)
        {
            var next = _byFirstChar.Count == 0 ? -1 : text.AsSpan(position, end - position).IndexOfAny(_firstChars);
            if (next < 0) break;
            position += next;
            var match = _byFirstChar[text[position]].FirstOrDefault(t => t.Content.Length <= end - position
                && text.AsSpan(position).StartsWith(t.Content, StringComparison.Ordinal));
            if (match is null) { position++; continue; }
            var matchStart = position;
            var matchEnd = position + match.Content.Length;
            position = matchEnd;
            if (match.SingleWord && ((matchStart > start && IsWordCharacter(text[matchStart - 1]))
                || (matchEnd < end && IsWordCharacter(text[matchEnd]))))
                continue;
            if (match.LStrip) while (matchStart > plainFrom && char.IsWhiteSpace(text[matchStart - 1])) matchStart--;
            if (match.RStrip) while (matchEnd < end && char.IsWhiteSpace(text[matchEnd])) matchEnd++;
            position = matchEnd;
            if (matchStart > plainFrom) parts.Add((plainFrom, matchStart, null));
            parts.Add((matchStart, matchEnd, match));
            plainFrom = matchEnd;
        }
        if (end > plainFrom) parts.Add((plainFrom, end, null));
        return parts;
    }

    private static bool IsWordCharacter(char c) => char.IsLetterOrDigit(c) || c == '_';
}
