namespace FineTune.Core.Tokenization;

/// <summary>
/// A token matched verbatim in text before BPE (Hugging Face "added_tokens"). <see cref="Special"/> ones are dropped
/// when decoding with skipSpecialTokens.
/// </summary>
public sealed record AddedToken(int Id, string Content, bool Special);
