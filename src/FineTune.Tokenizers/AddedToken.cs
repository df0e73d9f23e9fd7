namespace FineTune.Tokenizers;

/// <summary>
/// A token matched verbatim in text before BPE (Hugging Face "added_tokens"). <see cref="Special"/> ones are dropped
/// when decoding with skipSpecialTokens. <see cref="SingleWord"/>: only matched when not inside a word;
/// <see cref="LStrip"/>/<see cref="RStrip"/>: the whitespace on that side is swallowed by the token;
/// <see cref="Normalized"/>: matched in the normalized text rather than the raw input.
/// </summary>
public sealed record AddedToken(int Id, string Content, bool Special,
    bool SingleWord = false, bool LStrip = false, bool RStrip = false, bool Normalized = false);
