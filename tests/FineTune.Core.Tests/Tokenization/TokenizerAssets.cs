using System.Text;
using FineTune.Core.Data;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.Tokenization;

/// <summary>Tokenizers loaded once per test run (the Qwen3 file is 11 MB).</summary>
internal static class TokenizerAssets
{
    public static string Qwen3Folder => Path.Combine(AppContext.BaseDirectory, "assets", "qwen3");

    private static readonly Lazy<ChatTokenizer> LazyGpt2 = new(() => ChatTokenizer.LoadGpt2());
    private static readonly Lazy<ChatTokenizer> LazyQwen3 = new(() => ChatTokenizer.LoadFolder(Qwen3Folder));
    private static readonly Lazy<ChatTokenizer> LazyQwen3ChatML = new(() => ChatTokenizer.LoadFolder(Qwen3Folder, ChatML.Name));

    public static ChatTokenizer Gpt2 => LazyGpt2.Value;

    /// <summary>Qwen3 with its own chat template (think blocks).</summary>
    public static ChatTokenizer Qwen3 => LazyQwen3.Value;

    /// <summary>Qwen3's tokenizer with the plain ChatML template, comparable with GPT-2 + ChatML.</summary>
    public static ChatTokenizer Qwen3ChatML => LazyQwen3ChatML.Value;

    public static ChatTokenizer ByName(string name) => name == "gpt2" ? Gpt2 : Qwen3ChatML;
}

internal static class ChatTokenizerTestExtensions
{
    public static TokenizedExample Tokenize(this ChatTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, TrainOn trainOn) =>
        tokenizer.Tokenize(new Conversation(messages, 0), trainOn);
}

/// <summary>ChatML written out by hand, independent of the Jinja engine: the reference the template must match.</summary>
internal static class ChatMLReference
{
    public static string Render(IEnumerable<ChatMessage> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder();
        foreach (var m in messages) text.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>").Append('\n');
        if (addGenerationPrompt) text.Append("<|im_start|>assistant\n");
        return text.ToString();
    }
}
