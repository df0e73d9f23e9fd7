namespace FineTune.Tokenizers;

/// <summary>
/// GPT-2's reversible byte-to-character map: byte-level BPE vocabularies (tokenizer.json) spell every byte as a
/// printable character, so a space is "Ġ" and a newline "Ċ".
/// </summary>
internal static class ByteLevelAlphabet
{
    public static readonly char[] CharOfByte = BuildMap();

    private static char[] BuildMap()
    {
        var map = new char[256];
        var printable = new bool[256];
        for (var b = '!'; b <= '~'; b++) printable[b] = true;
        for (var b = '¡'; b <= '¬'; b++) printable[b] = true;
        for (var b = '®'; b <= 'ÿ'; b++) printable[b] = true;
        var next = 256;
        for (var b = 0; b < 256; b++) map[b] = printable[b] ? (char)b : (char)next++;
        return map;
    }

    public static string Spell(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) chars[i] = CharOfByte[bytes[i]];
        return new string(chars);
    }
}
