using System.Reflection;

namespace FineTune.Core.ChatTemplates;

/// <summary>
/// Chat templates a pipeline can name instead of giving a file: the Jinja text of each is embedded in FineTune.Core
/// as ChatTemplates/{name}.jinja.
/// </summary>
internal static class BuiltinChatTemplates
{
    public static IReadOnlyList<string> Names { get; } = ["llama3", ChatML.Name, "qwen2.5", "qwen3", "mistral",
        "alpaca"];

    // Read once, at first use: every caller, ChatML.Jinja included, then shares one string per template.
    private static readonly Dictionary<string, string> Sources = Names.ToDictionary(name => name, ReadResource,
        StringComparer.Ordinal);

    public static bool IsBuiltin(string name) => Sources.ContainsKey(name);

    /// <summary>The Jinja text of a built-in template, or null for an unknown name.</summary>
    public static string? Source(string name) => Sources.GetValueOrDefault(name);

    private static string ReadResource(string name)
    {
        var resource = name + ".jinja";
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("FineTune.Core.ChatTemplates." +
            resource)
            ?? throw new InvalidOperationException($"the built-in chat template resource {resource} is missing from " +
                $"FineTune.Core");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
