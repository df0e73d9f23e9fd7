using FineTune.Core.Tokenization;

namespace FineTune.Torch.Chat;

/// <summary>
/// The chat tokenizer of a folder holding tokenizer.json and tokenizer_config.json (the tokenize stage's
/// <c>tokenizer/</c> folder or an exported model folder).
/// </summary>
public static class TokenizerFolder
{
    public static readonly string[] Files = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

    // TODO(merge h/tok): ChatTokenizer.LoadFolder(directory)
    public static IChatTokenizer Load(string directory) => throw new NotSupportedException("no chat tokenizer loader is wired in yet");
}
