namespace FineTune.Jinja;

internal enum TokenKind
{
    Data,           // literal template text, whitespace control already applied
    VariableBegin,  // {{
    VariableEnd,    // }}
    BlockBegin,     // {%
    BlockEnd,       // %}
    Name,
    String,
    Integer,
    Float,
    Operator,       // + - * / // % ** ~ == != < <= > >= = . , : | ( ) [ ] { }
    Eof,
}

/// <summary>One lexeme; <see cref="Offset"/> is its position in the (newline-normalised) template source.</summary>
internal readonly record struct Token(TokenKind Kind, string Text, int Offset)
{
    public bool Is(TokenKind kind, string text) => Kind == kind && Text == text;
    public bool IsOperator(string op) => Kind == TokenKind.Operator && Text == op;
    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "'%}'",
        TokenKind.VariableEnd => "'}}'",
        TokenKind.Data => "template text",
        _ => $"'{Text}'",
    };
}
