using System.Globalization;
using System.Text;
using FineTune.Core.Data;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Formats.Ollama;

/// <summary>An Ollama chat template: its Go-template text and the same rendering done here, to compare.</summary>
internal sealed record OllamaTemplate(string Name, string Go, Func<IReadOnlyList<ChatMessage>, string> Render);

/// <summary>
/// The Modelfile that makes <c>ollama create NAME -f Modelfile</c> serve the GGUF beside it as the model was trained:
/// FROM, a TEMPLATE in Ollama's Go-template syntax that renders conversations as the training chat template does,
/// SYSTEM when that template inserts a default system message, PARAMETER stop for every end-of-turn token, and the
/// evaluate stage's sampling settings.
/// </summary>
internal static class OllamaModelfile
{
    public const string FileName = "Modelfile";

    // Ollama puts a system message (SYSTEM or the request's) into .Messages, renders the template, and llama.cpp adds
    // BOS when the GGUF says add_bos_token: so a template renders the turns and the generation prompt only.
    public static readonly OllamaTemplate ChatML = new("chatml",
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n",
        messages => string.Concat(messages.Select(m => $"<|im_start|>{m.Role}\n{m.Content}<|im_end|>\n"))
            + "<|im_start|>assistant\n");

    public static readonly OllamaTemplate Llama3 = new("llama3",
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}" +
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        messages => string.Concat(messages.Select(m =>
            $"<|start_header_id|>{m.Role}<|end_header_id|>\n\n{m.Content}<|eot_id|>"))
            + "<|start_header_id|>assistant<|end_header_id|>\n\n");

    public static readonly IReadOnlyList<OllamaTemplate> Known = [ChatML, Llama3];

    // Conversations on which a known template must render exactly as the training template does.
    private static readonly ChatMessage[][] Probes =
    [
        [new("user", "Hi")],
        [new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello!"), new("user", "2+2?")],
        [new("user", "你是谁？"), new("assistant", "我是甄嬛。"), new("user", "Why?")],
    ];

    /// <summary>The matched template and the default system message the training template adds, or null.</summary>
    public sealed record Match(OllamaTemplate Template, string? DefaultSystem);

    /// <summary>
    /// The known template that renders every probe conversation as <paramref name="render"/> (the training template
    /// with add_generation_prompt) does, after the BOS text it may start with; null when none does.
    /// </summary>
    public static Match? Find(Func<IReadOnlyList<ChatMessage>, string> render, string? bosToken)
    {
        string Training(IReadOnlyList<ChatMessage> messages)
        {
            var text = render(messages);
            return bosToken is not null && text.StartsWith(bosToken, StringComparison.Ordinal)
                ? text[bosToken.Length..] : text;
        }
        foreach (var template in Known)
        {
            // A template that adds a system message when there is none (Qwen2.5's) shows it in the first probe.
            string? defaultSystem = null;
            var bare = Training(Probes[0]);
            if (bare != template.Render(Probes[0]))
            {
                defaultSystem = DefaultSystem(template, bare, Probes[0]);
                if (defaultSystem is null) continue;
            }
            var all = Probes.All(p =>
            {
                var withSystem = defaultSystem is null || p[0].Role == "system"
                    ? p : [new ChatMessage("system", defaultSystem), .. p];
                return Training(p) == template.Render(withSystem);
            });
            if (all) return new Match(template, defaultSystem);
        }
        return null;
    }

    private static string? DefaultSystem(OllamaTemplate template, string rendered, ChatMessage[] probe)
    {
        const string marker = "\u0001SYSTEM\u0001";
        var shape = template.Render([new ChatMessage("system", marker), .. probe]);
        var at = shape.IndexOf(marker, StringComparison.Ordinal);
        var before = shape[..at];
        var after = shape[(at + marker.Length)..];
        return rendered.Length > before.Length + after.Length && rendered.StartsWith(before, StringComparison.Ordinal)
            && rendered.EndsWith(after, StringComparison.Ordinal)
            ? rendered[before.Length..^after.Length] : null;
    }

    /// <summary>The Modelfile text. <paramref name="match"/> null: an editable ChatML fallback and the training
    /// template as comments.</summary>
    public static string Write(string ggufFile, Match? match, string trainingTemplate, IReadOnlyList<string> stops,
        EvaluateSettings sampling)
    {
        var text = new StringBuilder();
        text.Append("# ollama create NAME -f Modelfile\n");
        text.Append($"FROM ./{ggufFile}\n\n");
        if (match is null)
        {
            text.Append("# FT0726: the training chat template has no Ollama equivalent that this tool knows (it knows " +
                $"{string.Join(", ", Known.Select(k => k.Name))}).\n# TEMPLATE below is a ChatML fallback: edit it " +
                "to render conversations as the training template does, which was:\n");
            foreach (var line in trainingTemplate.Split('\n')) text.Append("#   ").Append(line).Append('\n');
        }
        var template = match?.Template ?? ChatML;
        text.Append($"TEMPLATE \"\"\"{template.Go}\"\"\"\n");
        if (match?.DefaultSystem is { } system) text.Append($"SYSTEM \"\"\"{system}\"\"\"\n");
        text.Append('\n');
        foreach (var stop in stops.Distinct()) text.Append($"PARAMETER stop \"{stop}\"\n");
        text.Append($"PARAMETER temperature {Number(sampling.Temperature)}\n");
        text.Append($"PARAMETER top_p {Number(sampling.TopP)}\n");
        text.Append($"PARAMETER repeat_penalty {Number(sampling.RepetitionPenalty)}\n");
        // transformers' repetition penalty looks at every token so far; Ollama's at the last repeat_last_n (-1: all).
        text.Append("PARAMETER repeat_last_n -1\n");
        text.Append($"PARAMETER seed {sampling.Seed.ToString(CultureInfo.InvariantCulture)}\n");
        text.Append($"PARAMETER num_predict {sampling.MaxNewTokens.ToString(CultureInfo.InvariantCulture)}\n");
        return text.ToString();
    }

    private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>The end-of-turn tokens as text, for PARAMETER stop.</summary>
    public static IReadOnlyList<string> StopTexts(IChatTokenizer tokenizer) =>
        [.. tokenizer.StopTokenIds.Select(id => tokenizer.Decode([id], skipSpecialTokens: false))
            .Where(s => s.Length > 0)];
}
