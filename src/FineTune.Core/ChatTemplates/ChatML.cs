namespace FineTune.Core.ChatTemplates;

/// <summary>The ChatML template: <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message; rendered by
/// the Jinja engine like any other.</summary>
internal static class ChatML
{
    public const string Name = "chatml";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";
    public const string AssistantRole = "assistant";

    /// <summary>The template's Jinja text (chatml.jinja), as written to tokenizer_config.json for transformers'
    /// apply_chat_template.</summary>
    public static string Jinja => BuiltinChatTemplates.Source(Name)!;
}
