using System.Buffers.Binary;
using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Tokenization;

public class TokenizedDatasetTests
{
    // The layout the class documents: FTTOKENS, version, N, T, offsets[N + 1], ids[T], labels[T].
    private static byte[] TokensFile(uint version, uint count, ulong tokens, long[] offsets, int tokensWritten)
    {
        var bytes = new byte[24 + 8 * offsets.Length + 8 * tokensWritten];
        "FTTOKENS"u8.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), version);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), count);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16), tokens);
        for (var i = 0; i < offsets.Length; i++)
            BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(24 + 8 * i), offsets[i]);
        for (var i = 0; i < tokensWritten; i++)
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(24 + 8 * offsets.Length + 4 * i), 7 + i);
        return bytes;
    }

    [Fact]
    public void A_hand_written_file_reads_back()
    {
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, "ok.tokens");
        File.WriteAllBytes(path, TokensFile(1, 2, 3, [0, 1, 3], 3));
        var dataset = TokenizedDataset.Read(path);
        Assert.Equal(2, dataset.Count);
        Assert.Equal([7], dataset.Ids(0).ToArray());
        Assert.Equal([8, 9], dataset.Ids(1).ToArray());
    }

    public static TheoryData<string, byte[], string> Hostile() => new()
    {
        { "empty", [], "shorter than the 24-byte header" },
        { "bad magic", [.. "FTTOKENX"u8, .. new byte[16]], "does not start with FTTOKENS" },
        { "version 2", TokensFile(2, 0, 0, [0], 0), "format 2 is not supported" },
        // Unchecked, these sizes allocate 32 GB of offsets or wrap around before any length check.
        { "uint.MaxValue examples", TokensFile(1, uint.MaxValue, 0, [0], 0), $"claims {uint.MaxValue} examples" },
        { "ulong.MaxValue tokens", TokensFile(1, 0, ulong.MaxValue, [0], 0), $"of {ulong.MaxValue} tokens" },
        { "2^61 tokens", TokensFile(1, 0, 1UL << 61, [0], 0), "which take" },
        { "truncated", TokensFile(1, 1, 4, [0, 4], 4)[..^4], "but the file holds" },
        { "offsets going back", TokensFile(1, 2, 2, [0, 3, 2], 2), "example 0 ends at token 3" },
        { "negative offset", TokensFile(1, 2, 2, [0, -5, 2], 2), "example 0 ends at token -5" },
        { "first offset not 0", TokensFile(1, 1, 2, [1, 2], 2), "starts at token 1" },
        { "offsets short of the tokens", TokensFile(1, 1, 2, [0, 1], 2), "cover 1 tokens, not the 2" },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void A_hostile_header_is_a_located_error(string name, byte[] bytes, string expected)
    {
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, name.Replace(' ', '-') + ".tokens");
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<FineTuneException>(() => TokenizedDataset.Read(path));
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal((DiagnosticCodes.InvalidTokensFile, path), (diagnostic.Code, diagnostic.File));
        Assert.Contains(expected, diagnostic.Message);
        Assert.Equal(ExitCodes.StageFailed, error.ExitCode);
    }
}
