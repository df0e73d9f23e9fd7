using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Pipeline;

// A small YAML tree that remembers, for every node, the file and position it came from. Pipelines are merged
// (extends:, --set) before they are bound to settings, and every diagnostic must still point at the right file.

internal abstract class YNode
{
    public required string File { get; init; }
    public int Line { get; init; }
    public int Column { get; init; }

    public SourceLocation Location => new(File, Line, Column);

    public abstract string KindName { get; }
}

internal sealed class YScalar : YNode
{
    public required string Value { get; set; }

    /// <summary>Written without quotes: only such scalars can be null, numbers or booleans.</summary>
    public bool IsPlain { get; init; } = true;

    /// <summary>Already reported (an unknown ${param}); binding stays quiet about it rather than adding a second
    /// error.</summary>
    public bool AlreadyReported { get; set; }

    public bool IsNull => IsPlain && Value is "" or "~" or "null" or "Null" or "NULL";

    public override string KindName => IsNull ? "null" : "a scalar";
}

internal sealed class YMap : YNode
{
    public List<KeyValuePair<YScalar, YNode>> Entries { get; } = [];

    public YNode? this[string key] => Entries.FirstOrDefault(e => e.Key.Value == key).Value;

    public void Set(YScalar key, YNode value)
    {
        var index = Entries.FindIndex(e => e.Key.Value == key.Value);
        if (index >= 0) Entries[index] = new(Entries[index].Key, value);
        else Entries.Add(new(key, value));
    }

    public override string KindName => "a mapping";
}

internal sealed class YSequence : YNode
{
    public List<YNode> Items { get; } = [];
    public override string KindName => "a list";
}

internal static class YamlTree
{
    /// <summary>Parses YAML text; syntax errors become diagnostics at the position YamlDotNet reports.</summary>
    public static YNode? Parse(string text, string file, List<Diagnostic> diagnostics)
    {
        if (YamlStructureGuard.FindRefused(text) is var (problem, refusedLine, refusedColumn))
        {
            diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError,
                $"pipeline files refuse {problem}" + (problem.StartsWith("a YAML", StringComparison.Ordinal)
                    ? ": write the value out where it is used" : ""), file, refusedLine,
                refusedColumn));
            return null;
        }
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError, "YAML syntax error: " + Describe(e),
                file, (int)e.Start.Line, (int)e.Start.Column));
            return null;
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner throws this without a position for some unclosed flow collections.
            var (line, column) = LastScannablePosition(text);
            diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError,
                "YAML syntax error: unexpected end of a flow collection (an unclosed '[' or '{'?)", file, line,
                column));
            return null;
        }
        if (stream.Documents.Count == 0) return new YMap { File = file, Line = 1, Column = 1 };
        if (stream.Documents.Count > 1)
        {
            var second = stream.Documents[1].RootNode.Start;
            diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError,
                "a pipeline file holds one YAML document; remove the second '---'", file, (int)second.Line,
                (int)second.Column));
        }
        return Convert(stream.Documents[0].RootNode, file, diagnostics);
    }

    private static (int Line, int Column) LastScannablePosition(string text)
    {
        var scanner = new Scanner(new StringReader(text));
        var last = Mark.Empty;
        try
        {
            while (scanner.MoveNext())
                if (scanner.Current is YamlDotNet.Core.Tokens.FlowSequenceStart
                    or YamlDotNet.Core.Tokens.FlowMappingStart)
                {
                    last = scanner.Current.Start;
                }
        }
        catch (Exception e) when (e is YamlException or InvalidOperationException) { }
        return ((int)last.Line, (int)last.Column);
    }

    private static string Describe(YamlException e)
    {
        // YamlDotNet wraps some parser states in an unhelpful InvalidOperationException message.
        var message = e.Message;
        var inner = e.InnerException?.Message;
        if (message.StartsWith("(Line", StringComparison.Ordinal))
        {
            var close = message.IndexOf("): ", StringComparison.Ordinal);
            if (close > 0) message = message[(close + 3)..];
        }
        if (message.Contains("Operation is not valid", StringComparison.Ordinal) || string.IsNullOrWhiteSpace(message))
            message = "unexpected structure (an unclosed bracket or quote?)";
        if (inner is not null && !inner.Contains("Operation is not valid", StringComparison.Ordinal)
            && !message.Contains(inner, StringComparison.Ordinal))
            message += " (" + inner + ")";
        return message.TrimEnd('.');
    }

    private static YNode Convert(YamlNode node, string file, List<Diagnostic> diagnostics)
    {
        var line = (int)node.Start.Line;
        var column = (int)node.Start.Column;
        switch (node)
        {
            case YamlScalarNode scalar:
                return new YScalar
                {
                    File = file, Line = line, Column = column,
                    Value = scalar.Value ?? "",
                    IsPlain = scalar.Style is ScalarStyle.Plain or ScalarStyle.Any,
                };
            case YamlSequenceNode sequence:
                var list = new YSequence { File = file, Line = line, Column = column };
                foreach (var item in sequence.Children) list.Items.Add(Convert(item, file, diagnostics));
                return list;
            case YamlMappingNode mapping:
                var map = new YMap { File = file, Line = line, Column = column };
                // A set, not the map's linear lookup: a file of 100,000 keys took minutes.
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var (key, value) in mapping.Children)
                {
                    if (Convert(key, file, diagnostics) is not YScalar keyScalar)
                    {
                        diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError,
                            "a key must be a plain name", file, (int)key.Start.Line, (int)key.Start.Column));
                        continue;
                    }
                    if (seen.Add(keyScalar.Value))
                    {
                        map.Entries.Add(new(keyScalar, Convert(value, file, diagnostics)));
                        continue;
                    }
                    diagnostics.Add(Diagnostic.Error(DiagnosticCodes.DuplicateKey,
                        $"duplicate key '{keyScalar.Value}'", file, keyScalar.Line, keyScalar.Column));
                    map.Set(keyScalar, Convert(value, file, diagnostics));
                }
                return map;
            default:
                diagnostics.Add(Diagnostic.Error(DiagnosticCodes.PipelineSyntaxError,
                    "aliases and tags are not supported in pipeline files", file, line, column));
                return new YScalar { File = file, Line = line, Column = column, Value = "" };
        }
    }

    /// <summary>Overlays <paramref name="top"/> on <paramref name="bottom"/>: mappings merge key by key, anything else
    /// replaces.</summary>
    public static YNode Merge(YNode bottom, YNode top)
    {
        if (bottom is not YMap bottomMap || top is not YMap topMap) return top;
        var merged = new YMap { File = topMap.File, Line = topMap.Line, Column = topMap.Column };
        foreach (var entry in bottomMap.Entries) merged.Entries.Add(entry);
        foreach (var (key, value) in topMap.Entries)
        {
            var existing = merged[key.Value];
            merged.Set(key, existing is null ? value : Merge(existing, value));
        }
        return merged;
    }
}
