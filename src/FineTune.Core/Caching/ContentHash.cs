using System.Security.Cryptography;
using System.Text;

namespace FineTune.Core.Caching;

/// <summary>sha256 as lower-case hex: the one hash the project uses for files, entries and keys.</summary>
internal static class ContentHash
{
    public static string OfBytes(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static string OfText(string text) => OfBytes(Encoding.UTF8.GetBytes(text));

    public static string OfFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return OfStream(stream);
    }

    public static string OfStream(Stream stream) => Convert.ToHexStringLower(SHA256.HashData(stream));

    public static bool IsSha256(string? value) => value is { Length: 64 } && value.All(Uri.IsHexDigit);
}
