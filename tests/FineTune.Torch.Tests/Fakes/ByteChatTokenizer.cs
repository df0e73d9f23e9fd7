using System.Text;
using FineTune.Core.Data;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Tests.Fakes;

/// <summary>
/// A byte-level chat tokenizer for tests: ids 0..255 are UTF-8 bytes, then four special tokens. Being byte-level,
/// it splits multi-byte characters across ids exactly as real BPE vocabularies can.
/// </summary>
internal sealed class ByteChatTokenizer : IChatTokenizer
{
    public const int End = 256, Pad = 257, User = 258, Assistant = 259;

    public int VocabSize => 260;
    public IReadOnlyList<int> StopTokenIds { get; init; } = [End];
    public int PadTokenId => Pad;

    public IReadOnlyList<int> Encode(string text) => Encoding.UTF8.GetBytes(text).Select(b => (int)b).ToList();

    public IReadOnlyList<int> EncodeConversation(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var ids = new List<int>();
        foreach (var message in messages)
        {
            ids.Add(message.Role == "user" ? User : Assistant);
            ids.AddRange(Encode(message.Content));
            ids.Add(End);
        }
        if (addGenerationPrompt) ids.Add(Assistant);
        return ids;
    }

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = true)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (id < 256) { bytes.Add((byte)id); continue; }
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
            if (!skipSpecialTokens) text.Append(id switch { End => "<end>", Pad => "<pad>", User => "<user>", _ => "<assistant>" });
        }
        return text.Append(Encoding.UTF8.GetString(bytes.ToArray())).ToString();
    }

    /// <summary>Writes placeholder tokenizer files, as the tokenize stage's tokenizer/ folder holds.</summary>
    public static void WriteFolder(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), """{"model":{"type":"bytes"}}""");
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), """{"eos_token":"<end>","pad_token":"<pad>"}""");
        File.WriteAllText(Path.Combine(directory, "special_tokens_map.json"), """{"eos_token":"<end>"}""");
    }
}
