namespace FineTune.Jinja;

/// <summary>
/// Splits template text into tokens the way jinja2's lexer does with trim_blocks=True and lstrip_blocks=True:
/// <list type="bullet">
/// <item>'{%-', '{{-', '{#-' strip all whitespace before the tag; '-%}', '-}}', '-#}' strip all whitespace after
/// it;</item>
/// <item>trim_blocks: the first '\n' after a block or comment tag goes ('+%}' keeps it);</item>
/// <item>lstrip_blocks: spaces and tabs between a line start and a block or comment tag go ('{%+' keeps them).</item>
/// </list>
/// </summary>
internal sealed class JinjaLexer
{
    private const bool TrimBlocks = true;
    private const bool LStripBlocks = true;

    private static readonly string[] Operators =
        ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "=", ".", ",", ":", "|", "(", ")", "[", "]",
            "{", "}", "<", ">"];

    private readonly SourceText _source;
    private readonly string _text;
    private readonly List<Token> _tokens = [];
    private int _pos;
    // jinja2's "line_starting": the previous lexeme ended with '\n', so text without a newline still starts a line.
    private bool _lineStarting = true;

    private JinjaLexer(SourceText source)
    {
        _source = source;
        _text = source.Text;
    }

    public static List<Token> Tokenize(SourceText source)
    {
        var lexer = new JinjaLexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        while (_pos < _text.Length)
        {
            var tagStart = FindTagStart(_pos);
            if (tagStart < 0)
            {
                AddData(_text[_pos..], _pos);
                break;
            }

            var opener = _text[tagStart + 1];
            var sign = tagStart + 2 < _text.Length && _text[tagStart + 2] is '-' or '+' ? _text[tagStart + 2] : '\0';
            var data = _text[_pos..tagStart];
            if (sign == '-')
                data = data.TrimEnd();
            else if (sign != '+' && LStripBlocks && opener != '{')
                data = StripIndentBeforeTag(data);
            AddData(data, _pos);

            _pos = tagStart + 2 + (sign == '\0' ? 0 : 1);
            switch (opener)
            {
                case '#': LexComment(tagStart); break;
                case '{': LexTag(tagStart, TokenKind.VariableBegin, TokenKind.VariableEnd, '}'); break;
                default:
                    if (!TryLexRaw(tagStart)) LexTag(tagStart, TokenKind.BlockBegin, TokenKind.BlockEnd, '%');
                    break;
            }
        }
        _tokens.Add(new Token(TokenKind.Eof, "", _text.Length));
    }

    private int FindTagStart(int from)
    {
        for (var i = _text.IndexOf('{', from); i >= 0 && i + 1 < _text.Length; i = _text.IndexOf('{', i + 1))
            if (_text[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    private string StripIndentBeforeTag(string data)
    {
        var lineStart = data.LastIndexOf('\n') + 1;
        if (lineStart == 0 && !_lineStarting) return data;
        if (lineStart == data.Length) return data;
        for (var i = lineStart; i < data.Length; i++)
            if (!char.IsWhiteSpace(data[i])) return data;
        return data[..lineStart];
    }

    private void AddData(string data, int offset)
    {
        if (data.Length > 0) _tokens.Add(new Token(TokenKind.Data, data, offset));
    }

    private void LexComment(int tagStart)
    {
        var end = _text.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (end < 0)
            throw _source.Error(JinjaErrorKind.Syntax, "the comment opened here is never closed with '#}'", tagStart);
        var closeSign = end > _pos && _text[end - 1] is '-' or '+' ? _text[end - 1] : '\0';
        _pos = end + 2;
        AfterTagEnd(closeSign, trimNewline: TrimBlocks);
    }

    /// <summary>Consumes what follows a closing delimiter: all whitespace after '-', one newline under
    /// trim_blocks.</summary>
    private void AfterTagEnd(char closeSign, bool trimNewline)
    {
        var consumedFrom = _pos;
        if (closeSign == '-')
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos])) _pos++;
        else if (closeSign != '+' && trimNewline && _pos < _text.Length && _text[_pos] == '\n')
            _pos++;
        _lineStarting = _pos > consumedFrom ? _text[_pos - 1] == '\n' : false;
    }

    private void LexTag(int tagStart, TokenKind begin, TokenKind end, char closer)
    {
        _tokens.Add(new Token(begin, _text.Substring(tagStart, 2), tagStart));
        var brackets = new Stack<char>();
        while (true)
        {
            SkipWhitespace();
            if (_pos >= _text.Length)
                throw _source.Error(JinjaErrorKind.Syntax, $"the tag opened here is never closed with '{closer}}}'",
                    tagStart);

            if (brackets.Count == 0 && TryCloseTag(closer, out var closeSign))
            {
                _tokens.Add(new Token(end, closer + "}", _pos - 2));
                AfterTagEnd(closeSign, trimNewline: TrimBlocks && end == TokenKind.BlockEnd);
                return;
            }

            var c = _text[_pos];
            if (char.IsLetter(c) || c == '_') LexName();
            else if (char.IsAsciiDigit(c)) LexNumber();
            else if (c is '\'' or '"') LexString();
            else LexOperator(brackets);
        }
    }

    private bool TryCloseTag(char closer, out char closeSign)
    {
        closeSign = '\0';
        var at = _pos;
        if (_text[at] is '-' or '+')
        {
            closeSign = _text[at];
            at++;
        }
        if (at + 1 < _text.Length && _text[at] == closer && _text[at + 1] == '}')
        {
            // "+}}" is not a jinja2 closer for variables; treat '+' as an operator then.
            if (closeSign == '+' && closer == '}') return false;
            _pos = at + 2;
            return true;
        }
        closeSign = '\0';
        return false;
    }

    private void SkipWhitespace()
    {
        while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos])) _pos++;
    }

    private void LexName()
    {
        var start = _pos;
        while (_pos < _text.Length && (char.IsLetterOrDigit(_text[_pos]) || _text[_pos] == '_')) _pos++;
        _tokens.Add(new Token(TokenKind.Name, _text[start.._pos], start));
    }

    private void LexNumber()
    {
        var start = _pos;
        SkipDigits();
        var isFloat = false;
        // "1.5" is a float, but "x.0.1" and "1.attr" are not: a '.' needs a digit after it.
        if (_pos + 1 < _text.Length && _text[_pos] == '.' && char.IsAsciiDigit(_text[_pos + 1])
            && (start == 0 || _text[start - 1] != '.'))
        {
            _pos++;
            SkipDigits();
            isFloat = true;
        }
        if (_pos < _text.Length && _text[_pos] is 'e' or 'E')
        {
            var at = _pos + 1;
            if (at < _text.Length && _text[at] is '+' or '-') at++;
            if (at < _text.Length && char.IsAsciiDigit(_text[at]))
            {
                _pos = at;
                SkipDigits();
                isFloat = true;
            }
        }
        var text = _text[start.._pos].Replace("_", "");
        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, text, start));
    }

    private void SkipDigits()
    {
        while (_pos < _text.Length && (char.IsAsciiDigit(_text[_pos])
            || (_text[_pos] == '_' && _pos + 1 < _text.Length && char.IsAsciiDigit(_text[_pos + 1]))))
            _pos++;
    }

    private void LexString()
    {
        var start = _pos;
        var quote = _text[_pos++];
        var value = new System.Text.StringBuilder();
        while (true)
        {
            if (_pos >= _text.Length)
                throw _source.Error(JinjaErrorKind.Syntax, "the string starting here is never closed", start);
            var c = _text[_pos++];
            if (c == quote) break;
            if (c != '\\') { value.Append(c); continue; }
            if (_pos >= _text.Length)
                throw _source.Error(JinjaErrorKind.Syntax, "the string starting here is never closed", start);
            AppendEscape(value, start);
        }
        _tokens.Add(new Token(TokenKind.String, value.ToString(), start));
    }

    /// <summary>Python's "unicode-escape" decoding, which jinja2 applies to string literals; unknown escapes stay as
    /// written.</summary>
    private void AppendEscape(System.Text.StringBuilder value, int stringStart)
    {
        var c = _text[_pos++];
        switch (c)
        {
            case '\n': break; // backslash-newline is a line continuation
            case '\\': value.Append('\\'); break;
            case '\'': value.Append('\''); break;
            case '"': value.Append('"'); break;
            case 'a': value.Append('\a'); break;
            case 'b': value.Append('\b'); break;
            case 'f': value.Append('\f'); break;
            case 'n': value.Append('\n'); break;
            case 'r': value.Append('\r'); break;
            case 't': value.Append('\t'); break;
            case 'v': value.Append('\v'); break;
            case 'x': value.Append((char)ReadHex(2, stringStart)); break;
            case 'u': value.Append((char)ReadHex(4, stringStart)); break;
            case 'U': value.Append(char.ConvertFromUtf32(ReadHex(8, stringStart))); break;
            case >= '0' and <= '7':
                var code = c - '0';
                for (var n = 0; n < 2 && _pos < _text.Length && _text[_pos] is >= '0' and <= '7'; n++)
                    code = code * 8 + (_text[_pos++] - '0');
                value.Append((char)code);
                break;
            default:
                value.Append('\\').Append(c);
                break;
        }
    }

    private int ReadHex(int digits, int stringStart)
    {
        if (_pos + digits > _text.Length || !int.TryParse(_text.AsSpan(_pos, digits),
            System.Globalization.NumberStyles.AllowHexSpecifier, null, out var code))
            throw _source.Error(JinjaErrorKind.Syntax,
                $"bad \\x/\\u escape in the string starting here: expected {digits} hex digits", stringStart);
        _pos += digits;
        return code;
    }

    private void LexOperator(Stack<char> brackets)
    {
        foreach (var op in Operators)
        {
            if (string.CompareOrdinal(_text, _pos, op, 0, op.Length) != 0) continue;
            switch (op)
            {
                case "(": brackets.Push(')'); break;
                case "[": brackets.Push(']'); break;
                case "{": brackets.Push('}'); break;
                case ")" or "]" or "}":
                    if (brackets.Count == 0 || brackets.Pop() != op[0])
                        throw _source.Error(JinjaErrorKind.Syntax, $"unexpected '{op}'", _pos);
                    break;
            }
            _tokens.Add(new Token(TokenKind.Operator, op, _pos));
            _pos += op.Length;
            return;
        }
        throw _source.Error(JinjaErrorKind.Syntax, $"unexpected character '{_text[_pos]}'", _pos);
    }

    private bool TryLexRaw(int tagStart)
    {
        var at = _pos;
        while (at < _text.Length && char.IsWhiteSpace(_text[at])) at++;
        if (string.CompareOrdinal(_text, at, "raw", 0, 3) != 0) return false;
        at += 3;
        while (at < _text.Length && char.IsWhiteSpace(_text[at])) at++;
        var stripAfter = at < _text.Length && _text[at] == '-';
        if (stripAfter) at++;
        if (string.CompareOrdinal(_text, at, "%}", 0, 2) != 0) return false;
        _pos = at + 2;
        if (stripAfter) SkipWhitespace();

        // The body runs to the next "{% endraw %}" (with optional whitespace control on either side).
        for (var search = _pos; ; search++)
        {
            var end = _text.IndexOf("{%", search, StringComparison.Ordinal);
            if (end < 0) throw _source.Error(JinjaErrorKind.Syntax,
                "the raw block opened here is never closed with '{% endraw %}'", tagStart);
            var p = end + 2;
            var sign = p < _text.Length && _text[p] is '-' or '+' ? _text[p++] : '\0';
            while (p < _text.Length && char.IsWhiteSpace(_text[p])) p++;
            if (string.CompareOrdinal(_text, p, "endraw", 0, 6) != 0) continue;
            p += 6;
            while (p < _text.Length && char.IsWhiteSpace(_text[p])) p++;
            var closeSign = p < _text.Length && _text[p] is '-' or '+' ? _text[p++] : '\0';
            if (string.CompareOrdinal(_text, p, "%}", 0, 2) != 0) continue;

            var body = _text[_pos..end];
            if (sign == '-') body = body.TrimEnd();
            else if (sign != '+' && LStripBlocks) body = StripIndentBeforeTag(body);
            AddData(body, _pos);
            _pos = p + 2;
            AfterTagEnd(closeSign, trimNewline: TrimBlocks);
            return true;
        }
    }
}
