using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Jinja;

namespace FineTune.Core.ChatTemplates;

/// <summary>
/// A Hugging Face chat template, rendered the way transformers' <c>apply_chat_template(..., tokenize=False)</c> does:
/// <c>messages</c>, <c>tools</c> and <c>documents</c> (None when not given), <c>add_generation_prompt</c>, the special
/// tokens, and any extra keyword variables (<c>enable_thinking</c>, <c>date_string</c>, ...) as top-level variables.
/// Template errors are user errors located in the template: FT0410 (syntax), FT0411 (the template's own
/// raise_exception), FT0412 (anything else that fails while rendering).
/// </summary>
internal sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;

    public ChatTemplate(string source, string origin)
    {
        Source = source;
        Origin = origin;
        try
        {
            _template = JinjaTemplate.Parse(source, origin);
        }
        catch (JinjaException e)
        {
            throw UserError(e);
        }
    }

    public string Source { get; }

    /// <summary>Where the template came from (a file, or a built-in name), for error messages.</summary>
    public string Origin { get; }

    public string Render(JsonArray messages, bool addGenerationPrompt, JsonArray? tools = null,
                         JsonObject? extraVariables = null, string? bosToken = null, string? eosToken = null)
    {
        var variables = new Dictionary<string, JsonNode?>(StringComparer.Ordinal)
        {
            ["messages"] = messages,
            // transformers always passes tools= and documents=, as None when absent: `tools is defined` is true then.
            ["tools"] = tools,
            ["documents"] = null,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        if (bosToken is not null) variables["bos_token"] = bosToken;
        if (eosToken is not null) variables["eos_token"] = eosToken;
        if (extraVariables is not null)
            foreach (var (name, value) in extraVariables) variables[name] = value;
        try
        {
            return _template.Render(variables);
        }
        catch (JinjaException e)
        {
            throw UserError(e);
        }
    }

    internal static FineTuneException UserError(JinjaException error)
    {
        var code = error.Kind switch
        {
            JinjaErrorKind.Syntax => DiagnosticCodes.TemplateSyntaxError,
            JinjaErrorKind.Raised => DiagnosticCodes.TemplateRaisedException,
            _ => DiagnosticCodes.TemplateRenderError,
        };
        return new FineTuneException(Diagnostic.Error(code, error.Message, error.Origin, error.Line, error.Column));
    }
}
