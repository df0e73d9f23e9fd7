using System.Globalization;

namespace FineTune.Jinja;

/// <summary>
/// Builds the statement tree from tokens, following jinja2's grammar and operator precedence (loosest first):
/// <c>x if c else y</c>, or, and, not, comparisons and in, + -, ~, * / // %, **, unary -, then postfix
/// (.attr [item] (call)) and filters/tests (<c>x | f</c>, <c>x is t</c>), which bind tightest.
/// </summary>
internal sealed class JinjaParser
{
    private readonly SourceText _source;
    private readonly List<Token> _tokens;
    private int _index;
    private int _loopDepth;

    private JinjaParser(SourceText source, List<Token> tokens)
    {
        _source = source;
        _tokens = tokens;
    }

    public static IReadOnlyList<Stmt> Parse(SourceText source)
    {
        var parser = new JinjaParser(source, JinjaLexer.Tokenize(source));
        var body = parser.ParseStatements();
        if (parser.Current.Kind != TokenKind.Eof)
        {
            var name = parser.Peek(1);
            throw parser.SyntaxError($"unexpected '{{% {name.Text} %}}': there is no open block it could close",
                name.Offset);
        }
        return body;
    }

    // ---- token stream ----------------------------------------------------------------------------------------------

    private Token Current => _tokens[_index];
    private Token Peek(int ahead) => _tokens[Math.Min(_index + ahead, _tokens.Count - 1)];
    private Token Next() => _tokens[_index++];

    private JinjaException SyntaxError(string message, int offset)
        => _source.Error(JinjaErrorKind.Syntax, message, offset);

    private Token Expect(TokenKind kind, string? text = null)
    {
        var token = Current;
        if (token.Kind != kind || (text is not null && token.Text != text))
        {
            var wanted = text is not null ? $"'{text}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                _ => kind.ToString(),
            };
            throw SyntaxError($"expected {wanted}, found {token}", token.Offset);
        }
        _index++;
        return token;
    }

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op)) return false;
        _index++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        _index++;
        return true;
    }

    // ---- statements ------------------------------------------------------------------------------------------------

    /// <summary>Parses until end of input or a block tag named in <paramref name="endTags"/> (left at its
    /// name).</summary>
    private List<Stmt> ParseStatements(params string[] endTags)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0)
                        throw SyntaxError($"unexpected end of template: expected '{{% {endTags[^1]} %}}'",
                            token.Offset);
                    return body;
                case TokenKind.Data:
                    _index++;
                    body.Add(new TextStmt(token.Text, token.Offset));
                    break;
                case TokenKind.VariableBegin:
                    _index++;
                    var value = ParseExpression();
                    Expect(TokenKind.VariableEnd);
                    body.Add(new OutputStmt(value, token.Offset));
                    break;
                case TokenKind.BlockBegin:
                    var name = Peek(1);
                    if (name.Kind == TokenKind.Name && endTags.Contains(name.Text))
                    {
                        _index++; // leave the stream at the tag name for the caller
                        return body;
                    }
                    _index++;
                    body.Add(ParseTag(token));
                    break;
                default:
                    throw SyntaxError($"unexpected {token}", token.Offset);
            }
        }
    }

    private Stmt ParseTag(Token begin)
    {
        var keyword = Expect(TokenKind.Name);
        switch (keyword.Text)
        {
            case "if": return ParseIf(begin);
            case "for": return ParseFor(begin);
            case "set": return ParseSet(begin);
            case "macro": return ParseMacro(begin);
            case "filter": return ParseFilterBlock(begin);
            case "generation":
                Expect(TokenKind.BlockEnd);
                var body = ParseStatements("endgeneration");
                EndTag("endgeneration");
                return new BlockStmt(body, begin.Offset);
            case "break" or "continue":
                if (_loopDepth == 0)
                    throw SyntaxError($"'{keyword.Text}' can only be used inside a for loop", keyword.Offset);
                Expect(TokenKind.BlockEnd);
                return new LoopControlStmt(keyword.Text == "break" ? Flow.Break : Flow.Continue, begin.Offset);
            case "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro" or "endfilter" or "endgeneration":
                throw SyntaxError($"unexpected '{{% {keyword.Text} %}}': there is no open block it belongs to",
                    keyword.Offset);
            default:
                throw SyntaxError($"unknown or unsupported tag '{keyword.Text}'", keyword.Offset);
        }
    }

    private void EndTag(string name)
    {
        Expect(TokenKind.Name, name);
        Expect(TokenKind.BlockEnd);
    }

    private Stmt ParseIf(Token begin)
    {
        var branches = new List<(Expr, IReadOnlyList<Stmt>)>();
        IReadOnlyList<Stmt> otherwise = [];
        var condition = ParseExpression();
        Expect(TokenKind.BlockEnd);
        while (true)
        {
            var body = ParseStatements("elif", "else", "endif");
            branches.Add((condition, body));
            var tag = Next();
            if (tag.Text == "elif")
            {
                condition = ParseExpression();
                Expect(TokenKind.BlockEnd);
                continue;
            }
            if (tag.Text == "else")
            {
                Expect(TokenKind.BlockEnd);
                otherwise = ParseStatements("endif");
                Next();
            }
            Expect(TokenKind.BlockEnd);
            return new IfStmt(branches, otherwise, begin.Offset);
        }
    }

    private Stmt ParseFor(Token begin)
    {
        var targets = ParseAssignTargets();
        Expect(TokenKind.Name, "in");
        var iterable = ParseExpression(allowConditional: false);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression();
        if (Current.IsName("recursive")) throw SyntaxError("recursive for loops are not supported", Current.Offset);
        Expect(TokenKind.BlockEnd);

        _loopDepth++;
        var body = ParseStatements("else", "endfor");
        _loopDepth--;
        IReadOnlyList<Stmt> otherwise = [];
        if (Next().Text == "else")
        {
            Expect(TokenKind.BlockEnd);
            otherwise = ParseStatements("endfor");
            Next();
        }
        Expect(TokenKind.BlockEnd);
        return new ForStmt(targets, iterable, filter, body, otherwise, begin.Offset);
    }

    private List<string> ParseAssignTargets()
    {
        var parenthesized = SkipOperator("(");
        var targets = new List<string> { Expect(TokenKind.Name).Text };
        while (SkipOperator(","))
        {
            if (Current.Kind != TokenKind.Name) break;
            targets.Add(Next().Text);
        }
        if (parenthesized) Expect(TokenKind.Operator, ")");
        return targets;
    }

    private Stmt ParseSet(Token begin)
    {
        var first = Expect(TokenKind.Name);
        if (SkipOperator("."))
        {
            var attribute = Expect(TokenKind.Name).Text;
            Expect(TokenKind.Operator, "=");
            var value = ParseExpression();
            Expect(TokenKind.BlockEnd);
            return new SetStmt([first.Text], attribute, value, begin.Offset);
        }

        var targets = new List<string> { first.Text };
        while (SkipOperator(",")) targets.Add(Expect(TokenKind.Name).Text);
        if (SkipOperator("="))
        {
            var value = ParseTupleOrExpression();
            Expect(TokenKind.BlockEnd);
            return new SetStmt(targets, null, value, begin.Offset);
        }

        if (targets.Count > 1) throw SyntaxError("a block set assigns exactly one name", first.Offset);
        var filters = ParseFilterChain();
        Expect(TokenKind.BlockEnd);
        var body = ParseStatements("endset");
        EndTag("endset");
        return new BlockSetStmt(first.Text, filters, body, begin.Offset);
    }

    private List<FilterExpr> ParseFilterChain()
    {
        var filters = new List<FilterExpr>();
        var placeholder = new ConstantExpr(null, Current.Offset);
        while (SkipOperator("|")) filters.Add(ParseFilter(placeholder));
        return filters;
    }

    private Stmt ParseFilterBlock(Token begin)
    {
        var placeholder = new ConstantExpr(null, Current.Offset);
        var filters = new List<FilterExpr> { ParseFilter(placeholder) };
        while (SkipOperator("|")) filters.Add(ParseFilter(placeholder));
        Expect(TokenKind.BlockEnd);
        var body = ParseStatements("endfilter");
        EndTag("endfilter");
        return new FilterBlockStmt(filters, body, begin.Offset);
    }

    private Stmt ParseMacro(Token begin)
    {
        var name = Expect(TokenKind.Name).Text;
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        var seenDefault = false;
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            if (Current.IsOperator(")")) break;
            var parameter = Expect(TokenKind.Name);
            Expr? defaultValue = null;
            if (SkipOperator("=")) defaultValue = ParseExpression();
            else if (seenDefault)
                throw SyntaxError("a parameter without a default cannot follow one with a default", parameter.Offset);
            seenDefault |= defaultValue is not null;
            parameters.Add((parameter.Text, defaultValue));
        }
        Expect(TokenKind.Operator, ")");
        Expect(TokenKind.BlockEnd);

        var outerLoopDepth = _loopDepth;
        _loopDepth = 0; // a loop outside the macro does not make {% break %} legal inside it
        var body = ParseStatements("endmacro");
        _loopDepth = outerLoopDepth;
        Next();
        if (Current.Kind == TokenKind.Name) Next(); // {% endmacro name %}
        Expect(TokenKind.BlockEnd);
        return new MacroStmt(name, parameters, body, begin.Offset);
    }

    // ---- expressions -----------------------------------------------------------------------------------------------

    /// <summary>An expression, or a bare tuple <c>a, b</c> (used by <c>set a, b = 1, 2</c>).</summary>
    private Expr ParseTupleOrExpression()
    {
        var first = ParseExpression();
        if (!Current.IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOperator(","))
        {
            if (Current.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd) break;
            items.Add(ParseExpression());
        }
        return new ListExpr(items, first.Offset, isTuple: true);
    }

    private Expr ParseExpression(bool allowConditional = true)
    {
        var expr = ParseOr();
        if (!allowConditional) return expr;
        while (Current.IsName("if"))
        {
            var at = Next().Offset;
            var condition = ParseOr();
            Expr? otherwise = SkipName("else") ? ParseExpression() : null;
            expr = new ConditionalExpr(condition, expr, otherwise, at);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Next().Offset;
            left = new LogicalExpr(left, ParseAnd(), isAnd: false, at);
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Next().Offset;
            left = new LogicalExpr(left, ParseNot(), isAnd: true, at);
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            var at = Next().Offset;
            return new NotExpr(ParseNot(), at);
        }
        return ParseCompare();
    }

    private static readonly HashSet<string> ComparisonOperators = ["==", "!=", "<", "<=", ">", ">="];

    private Expr ParseCompare()
    {
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && ComparisonOperators.Contains(Current.Text))
                rest.Add((Next().Text, ParseMath1()));
            else if (SkipName("in"))
                rest.Add(("in", ParseMath1()));
            else if (Current.IsName("not") && Peek(1).IsName("in"))
            {
                _index += 2;
                rest.Add(("not in", ParseMath1()));
            }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, first.Offset);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParseConcat(), op.Offset);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var first = ParseMath2();
        if (!Current.IsOperator("~")) return first;
        var parts = new List<Expr> { first };
        while (SkipOperator("~")) parts.Add(ParseMath2());
        return new ConcatExpr(parts, first.Offset);
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParsePow(), op.Offset);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(withFilters: true);
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new BinaryExpr("**", left, ParseUnary(withFilters: true), op.Offset);
        }
        return left;
    }

    private Expr ParseUnary(bool withFilters)
    {
        Expr node;
        if (Current.IsOperator("-") || Current.IsOperator("+"))
        {
            var op = Next();
            node = new NegateExpr(ParseUnary(withFilters: false), op.Text == "-", op.Offset);
        }
        else
        {
            node = ParsePrimary();
        }
        node = ParsePostfix(node);
        return withFilters ? ParseFiltersAndTests(node) : node;
    }

    private Expr ParsePrimary()
    {
        var token = Next();
        switch (token.Kind)
        {
            case TokenKind.Name:
                return token.Text switch
                {
                    "true" or "True" => new ConstantExpr(true, token.Offset),
                    "false" or "False" => new ConstantExpr(false, token.Offset),
                    "none" or "None" => new ConstantExpr(null, token.Offset),
                    _ => new NameExpr(token.Text, token.Offset),
                };
            case TokenKind.String:
                // Adjacent literals join, as in Python: "a" "b" == "ab".
                var text = token.Text;
                while (Current.Kind == TokenKind.String) text += Next().Text;
                return new ConstantExpr(text, token.Offset);
            case TokenKind.Integer:
                if (!long.TryParse(token.Text, NumberStyles.None, CultureInfo.InvariantCulture, out var integer))
                    throw SyntaxError($"integer {token.Text} is too large", token.Offset);
                return new ConstantExpr(integer, token.Offset);
            case TokenKind.Float:
                return new ConstantExpr(double.Parse(token.Text, NumberStyles.Float, CultureInfo.InvariantCulture),
                    token.Offset);
            case TokenKind.Operator when token.Text == "(":
                return ParseParenthesized(token);
            case TokenKind.Operator when token.Text == "[":
                var items = new List<Expr>();
                while (!Current.IsOperator("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Current.IsOperator("]")) break;
                    items.Add(ParseExpression());
                }
                Next();
                return new ListExpr(items, token.Offset);
            case TokenKind.Operator when token.Text == "{":
                var entries = new List<(Expr, Expr)>();
                while (!Current.IsOperator("}"))
                {
                    if (entries.Count > 0) Expect(TokenKind.Operator, ",");
                    if (Current.IsOperator("}")) break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    entries.Add((key, ParseExpression()));
                }
                Next();
                return new DictExpr(entries, token.Offset);
            default:
                throw SyntaxError($"unexpected {token}: expected a value", token.Offset);
        }
    }

    private Expr ParseParenthesized(Token open)
    {
        if (SkipOperator(")")) return new ListExpr([], open.Offset, isTuple: true);
        var first = ParseExpression();
        if (SkipOperator(")")) return first;
        var items = new List<Expr> { first };
        while (SkipOperator(","))
        {
            if (Current.IsOperator(")")) break;
            items.Add(ParseExpression());
        }
        Expect(TokenKind.Operator, ")");
        return new ListExpr(items, open.Offset, isTuple: true);
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var token = Current;
            if (token.IsOperator("."))
            {
                Next();
                var member = Next();
                node = member.Kind switch
                {
                    TokenKind.Name => new AttributeExpr(node, member.Text, member.Offset),
                    TokenKind.Integer => new ItemExpr(node, new ConstantExpr(long.Parse(member.Text,
                        CultureInfo.InvariantCulture), member.Offset), member.Offset),
                    _ => throw SyntaxError($"expected an attribute name after '.', found {member}", member.Offset),
                };
            }
            else if (token.IsOperator("["))
            {
                Next();
                node = ParseSubscript(node, token);
            }
            else if (token.IsOperator("("))
            {
                Next();
                node = new CallExpr(node, ParseCallArguments(), token.Offset);
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscript(Expr target, Token open)
    {
        Expr? start = null, stop = null, step = null;
        if (!Current.IsOperator(":")) start = ParseExpression();
        if (!SkipOperator(":"))
        {
            Expect(TokenKind.Operator, "]");
            return new ItemExpr(target, start!, open.Offset);
        }
        if (!Current.IsOperator(":") && !Current.IsOperator("]")) stop = ParseExpression();
        if (SkipOperator(":") && !Current.IsOperator("]")) step = ParseExpression();
        Expect(TokenKind.Operator, "]");
        return new SliceExpr(target, start, stop, step, open.Offset);
    }

    /// <summary>After '(' : positional arguments, then name=value keywords, up to ')'.</summary>
    private Arguments ParseCallArguments()
    {
        var positional = new List<Expr>();
        var keywords = new List<(string, Expr)>();
        while (!Current.IsOperator(")"))
        {
            if (positional.Count + keywords.Count > 0) Expect(TokenKind.Operator, ",");
            if (Current.IsOperator(")")) break;
            if (Current.Kind == TokenKind.Name && Peek(1).IsOperator("="))
            {
                var name = Next().Text;
                Next();
                keywords.Add((name, ParseExpression()));
            }
            else
            {
                if (keywords.Count > 0)
                    throw SyntaxError("a positional argument cannot follow keyword arguments", Current.Offset);
                positional.Add(ParseExpression());
            }
        }
        Expect(TokenKind.Operator, ")");
        return new Arguments(positional, keywords);
    }

    private Expr ParseFiltersAndTests(Expr node)
    {
        while (true)
        {
            if (SkipOperator("|")) node = ParseFilter(node);
            else if (Current.IsName("is")) node = ParseTest(node);
            else if (Current.IsOperator("("))
            {
                var open = Next();
                node = new CallExpr(node, ParseCallArguments(), open.Offset);
            }
            else return node;
        }
    }

    private FilterExpr ParseFilter(Expr value)
    {
        var name = Expect(TokenKind.Name);
        var filter = Filters.Find(name.Text)
            ?? throw _source.Error(JinjaErrorKind.Runtime, $"no filter named '{name.Text}'", name.Offset);
        var arguments = Arguments.None;
        if (SkipOperator("(")) arguments = ParseCallArguments();
        return new FilterExpr(value, name.Text, filter, arguments, name.Offset);
    }

    private static readonly HashSet<TokenKind> TestArgumentStarts = [TokenKind.Name, TokenKind.String,
        TokenKind.Integer, TokenKind.Float];

    private Expr ParseTest(Expr value)
    {
        Next(); // "is"
        var negated = SkipName("not");
        var name = Next();
        if (name.Kind != TokenKind.Name
            && !(name.Kind == TokenKind.Operator && ComparisonOperators.Contains(name.Text)))
            throw SyntaxError($"expected a test name after 'is', found {name}", name.Offset);
        var test = BuiltinTests.Find(name.Text)
            ?? throw _source.Error(JinjaErrorKind.Runtime, $"no test named '{name.Text}'", name.Offset);

        var arguments = Arguments.None;
        if (SkipOperator("("))
        {
            arguments = ParseCallArguments();
        }
        else if ((TestArgumentStarts.Contains(Current.Kind) || Current.IsOperator("[") || Current.IsOperator("{"))
                 && !(Current.IsName("else") || Current.IsName("or") || Current.IsName("and") || Current.IsName("if")))
        {
            // `x is divisibleby 3`, `x is equalto 'a'`: one argument without parentheses.
            arguments = new Arguments([ParsePostfix(ParsePrimary())], []);
        }
        return new TestExpr(value, test, arguments, negated, name.Offset);
    }
}
