namespace FineTune.Tokenizers;

/// <summary>
/// A tokenizer.json that cannot be read, is not JSON, or uses a component this library does not implement.
/// <see cref="Exception.Message"/> says which; <see cref="Origin"/> names the file so callers can point at it.
/// </summary>
public sealed class TokenizerJsonException(string message, string origin) : Exception(message)
{
    public string Origin { get; } = origin;
}
