namespace FineTune.Core.Tokenization;

/// <summary>The ChatML template: <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message; rendered by the Jinja engine like any other.</summary>
public static class ChatML
{
    public const string Name = "chatml";
    public const string ImStart = "<|im_start|>";
    public const string ImEnd = "<|im_end|>";
    public const string AssistantRole = "assistant";

    /// <summary>The same template as a Jinja string, for tokenizer_config.json (what transformers' apply_chat_template runs).</summary>
    public const string Jinja =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
}
