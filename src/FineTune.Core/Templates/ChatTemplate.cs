using System.Text.Json.Nodes;

namespace FineTune.Core.Templates;

/// <summary>
/// A Hugging Face chat template, rendered the way transformers' <c>apply_chat_template(..., tokenize=False)</c> does:
/// <c>messages</c>, <c>tools</c> and <c>documents</c> (None when not given), <c>add_generation_prompt</c>, the special
/// tokens, and any extra keyword variables (<c>enable_thinking</c>, <c>date_string</c>, ...) as top-level variables.
/// </summary>
public sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;

    public ChatTemplate(string source, string origin)
    {
        Source = source;
        Origin = origin;
        _template = JinjaTemplate.Parse(source, origin);
    }

    public string Source { get; }

    /// <summary>Where the template came from (a file, or a built-in name), for error messages.</summary>
    public string Origin { get; }

    public string Render(JsonArray messages, bool addGenerationPrompt, JsonArray? tools = null,
                         JsonObject? extraVariables = null, string? bosToken = null, string? eosToken = null)
    {
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = TemplateValues.FromJson(messages),
            // transformers always passes tools= and documents=, as None when absent: `tools is defined` is true then.
            ["tools"] = tools is null ? null : TemplateValues.FromJson(tools),
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (bosToken is not null) variables["bos_token"] = bosToken;
        if (eosToken is not null) variables["eos_token"] = eosToken;
        if (extraVariables is not null)
            foreach (var (name, value) in extraVariables) variables[name] = TemplateValues.FromJson(value);
        return _template.RenderValues(variables);
    }
}
