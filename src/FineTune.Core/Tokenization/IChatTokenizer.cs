using FineTune.Core.Data;

namespace FineTune.Core.Tokenization;

/// <summary>
/// A tokenizer together with the chat template it trains with: what evaluation, generation and chat need.
/// Loaded from a tokenizer folder written by the tokenize stage (or an exported model folder) by
/// <c>ChatTokenizer.LoadFolder</c>.
/// </summary>
internal interface IChatTokenizer
{
    int VocabSize { get; }

    /// <summary>Ids of the rendered conversation; with <paramref name="addGenerationPrompt"/> it ends where the
    /// assistant's answer begins.</summary>
    IReadOnlyList<int> EncodeConversation(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>Plain text to ids (no template, no special tokens added).</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>Ids to text; special tokens are dropped when <paramref name="skipSpecialTokens"/>.</summary>
    string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = true);

    /// <summary>Tokens that end an assistant turn (generation stops on any of them).</summary>
    IReadOnlyList<int> StopTokenIds { get; }

    int PadTokenId { get; }
}
