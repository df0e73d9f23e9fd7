using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Pipeline;

/// <summary>
/// What the pipeline file alone shows to be impossible for the export stage, reported at validate time so that no
/// training runs for an export that cannot be written.
/// </summary>
internal static class ExportChecks
{
    /// <summary>The model_type values the GGUF writer maps onto llama.cpp architectures.</summary>
    public static readonly IReadOnlyList<string> GgufArchitectures = ["llama", "qwen2", "qwen3"];

    /// <summary>
    /// The built-in chat templates that no Ollama template the Modelfile writer knows renders identically (a test
    /// renders every built-in template through the writer's matcher to keep this list true).
    /// </summary>
    public static readonly IReadOnlyList<string> TemplatesWithoutOllamaEquivalent = ["mistral", "alpaca"];

    public static string OllamaTemplateProblem(string template) =>
        $"export: the ollama format needs a chat template that Ollama's Go templates can express (ChatML/Qwen or " +
        $"Llama 3), but the chat template ({template}) renders differently from each; drop ollama from formats, or " +
        "set export.ollama_fallback: true to write a Modelfile with an editable ChatML TEMPLATE";

    public static IEnumerable<(string Code, string Message)> Problems(PipelineDefinition pipeline)
    {
        var export = pipeline.Stages.Export;
        var train = pipeline.Stages.Train;
        if (export.Formats.Contains("adapter") && train.Method != "lora")
            yield return (DiagnosticCodes.AdapterExportNeedsLora,
                $"export: the adapter format needs train.method: lora, but this pipeline trains with method " +
                $"'{train.Method}', which changes every weight and leaves no adapter; export hf (the whole model) " +
                "instead, or train with method: lora");
        if (export.Writes("gguf") && !train.IsBuiltin && LocalModelType(pipeline) is { } modelType
            && !GgufArchitectures.Contains(modelType))
            yield return (DiagnosticCodes.GgufUnsupportedArchitecture,
                $"export: the GGUF writer supports {string.Join(", ", GgufArchitectures)} models, but " +
                $"'{train.Model}' is a {modelType} model; drop gguf and ollama from formats");
        var template = pipeline.Stages.Tokenize.ChatTemplate;
        if (export.Formats.Contains("ollama") && !export.OllamaFallback
            && TemplatesWithoutOllamaEquivalent.Contains(template))
            yield return (DiagnosticCodes.OllamaTemplateUnsupported, OllamaTemplateProblem($"built-in '{template}'"));
    }

    // A Hub model is only known once fetched; the export stage checks it again before writing anything.
    private static string? LocalModelType(PipelineDefinition pipeline)
    {
        try
        {
            var config = Path.Combine(Path.GetFullPath(pipeline.Stages.Train.Model, pipeline.Directory), "config.json");
            if (!File.Exists(config)) return null;
            return JsonNode.Parse(File.ReadAllText(config))?["model_type"]?.GetValue<string>();
        }
        catch (Exception e) when (e is IOException or JsonException or ArgumentException or InvalidOperationException
            or UnauthorizedAccessException or NotSupportedException)
        {
            return null;
        }
    }
}
