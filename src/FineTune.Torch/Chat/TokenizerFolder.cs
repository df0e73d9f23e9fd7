using FineTune.Core.Tokenization;

namespace FineTune.Torch.Chat;

/// <summary>
/// The chat tokenizer of a folder holding tokenizer.json and tokenizer_config.json (the tokenize stage's
/// <c>tokenizer/</c> folder or an exported model folder).
/// </summary>
internal static class TokenizerFolder
{
    public static readonly string[] Files = [ChatTokenizer.TokenizerJsonFile, ChatTokenizer.TokenizerConfigFile,
        ChatTokenizer.SpecialTokensMapFile];

    public static IChatTokenizer Load(string directory) => ChatTokenizer.LoadFolder(directory);
}
