using System.Reflection;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Templates;

/// <summary>
/// Chat templates a pipeline can name instead of giving a file: the Jinja text is embedded in FineTune.Core
/// (Templates/Builtin/*.jinja), except chatml, whose single source is <see cref="ChatML.Jinja"/>.
/// </summary>
public static class BuiltinChatTemplates
{
    // name -> embedded resource file name (null: the text lives in code)
    private static readonly (string Name, string? Resource)[] Templates =
    [
        ("llama3", "llama3.jinja"),
        ("chatml", null),
        ("qwen2.5", "qwen2.5.jinja"),
        ("qwen3", "qwen3.jinja"),
        ("mistral", "mistral.jinja"),
        ("alpaca", "alpaca.jinja"),
    ];

    public static IReadOnlyList<string> Names { get; } = Templates.Select(t => t.Name).ToArray();

    public static bool IsBuiltin(string name) => Names.Contains(name, StringComparer.Ordinal);

    /// <summary>The Jinja text of a built-in template, or null for an unknown name.</summary>
    public static string? Source(string name)
    {
        foreach (var (known, resource) in Templates)
        {
            if (!string.Equals(known, name, StringComparison.Ordinal)) continue;
            if (resource is null) return ChatML.Jinja;
            using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("FineTune.Core.Templates.Builtin." + resource)
                ?? throw new InvalidOperationException($"the built-in chat template resource {resource} is missing from FineTune.Core");
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        return null;
    }
}
