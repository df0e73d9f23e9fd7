using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Formats.Gguf;

/// <summary>
/// A byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json) as GGUF's <c>tokenizer.*</c> metadata, the way
/// llama.cpp's converter writes it: <c>tokenizer.ggml.model</c> "gpt2", the pre-tokenizer's name, one token per
/// embedding row (rows no token uses become <c>[PADn]</c>, type UNUSED), token types (NORMAL, CONTROL for special added
/// tokens, USER_DEFINED for the other added ones), the merges as "a b" strings, the special ids, add_bos_token and the
/// chat template.
/// </summary>
internal static class GgufTokenizer
{
    // llama.cpp's llama_token_type.
    private const int Normal = 1, Control = 3, UserDefined = 4, Unused = 5;

    public static void AddTo(GgufWriter writer, string tokenizerDirectory, int vocabSize, IReadOnlyList<int> stopTokenIds)
    {
        var jsonPath = Path.Combine(tokenizerDirectory, ChatTokenizer.TokenizerJsonFile);
        var configPath = Path.Combine(tokenizerDirectory, ChatTokenizer.TokenizerConfigFile);
        JsonObject json, config;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(jsonPath))!.AsObject();
            config = File.Exists(configPath) ? JsonNode.Parse(File.ReadAllText(configPath))!.AsObject() : [];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or IOException)
        {
            throw Unsupported($"it cannot be read: {e.Message}", jsonPath);
        }
        var model = json["model"] as JsonObject;
        if (model?["type"]?.GetValue<string>() != "BPE" || model["vocab"] is not JsonObject vocab)
            throw Unsupported($"its model is '{model?["type"]}', not BPE", jsonPath);
        if (json["decoder"]?["type"]?.GetValue<string>() != "ByteLevel")
            throw Unsupported("it is not byte-level (its decoder is not ByteLevel)", jsonPath);

        var tokens = new string?[vocabSize];
        var types = new int[vocabSize];
        foreach (var (token, id) in vocab)
            Place(id!.GetValue<int>(), token, Normal);
        foreach (var added in json["added_tokens"] as JsonArray ?? [])
            Place(added!["id"]!.GetValue<int>(), added["content"]!.GetValue<string>(),
                added["special"]?.GetValue<bool>() == true ? Control : UserDefined);
        for (var id = 0; id < vocabSize; id++)
        {
            if (tokens[id] is not null) continue;
            tokens[id] = $"[PAD{id}]";
            types[id] = Unused;
        }

        var merges = (model["merges"] as JsonArray ?? []).Select(m => m switch
        {
            JsonArray pair => $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}",
            _ => m!.GetValue<string>(),
        }).ToList();

        writer.Add("tokenizer.ggml.model", "gpt2");
        if (PreTokenizerName(json["pre_tokenizer"]) is { } pre) writer.Add("tokenizer.ggml.pre", pre);
        writer.Add("tokenizer.ggml.tokens", tokens.Select(t => t!).ToList());
        writer.Add("tokenizer.ggml.token_type", types);
        writer.Add("tokenizer.ggml.merges", merges);
        var ids = tokens.Select((t, i) => (t, i)).GroupBy(p => p.t!).ToDictionary(g => g.Key, g => g.First().i,
            StringComparer.Ordinal);
        int? IdOf(string key) => TokenText(config[key]) is { } text && ids.TryGetValue(text, out var id) ? id : null;
        var eos = IdOf("eos_token") ?? (stopTokenIds.Count > 0 ? stopTokenIds[0] : null);
        if (IdOf("bos_token") is { } bos) writer.Add("tokenizer.ggml.bos_token_id", (uint)bos);
        if (eos is { } eosId) writer.Add("tokenizer.ggml.eos_token_id", (uint)eosId);
        // The end-of-turn token the chat template closes each turn with (<|im_end|>, <|eot_id|>).
        if (stopTokenIds.Count > 0) writer.Add("tokenizer.ggml.eot_token_id", (uint)stopTokenIds[0]);
        if ((IdOf("pad_token") ?? eos) is { } pad) writer.Add("tokenizer.ggml.padding_token_id", (uint)pad);
        writer.Add("tokenizer.ggml.add_bos_token", AddsBos(config, json));
        writer.Add("tokenizer.ggml.add_eos_token", false);
        if (config["chat_template"] is JsonValue template && template.TryGetValue<string>(out var source))
            writer.Add("tokenizer.chat_template", source);

        void Place(int id, string token, int type)
        {
            if (id < 0 || id >= vocabSize)
                throw Unsupported($"it has token id {id} but the model embeds only {vocabSize} tokens", jsonPath);
            tokens[id] = token;
            types[id] = type;
        }
    }

    /// <summary>
    /// llama.cpp's name for the pre-tokenizer's split (the converter identifies it by hashing a tokenization; the
    /// regular expression says the same): ByteLevel with its own regex is GPT-2's; Llama 3 splits digits in runs of
    /// up to three, Qwen2 one by one. Null (llama.cpp then uses its default) for anything else.
    /// </summary>
    public static string? PreTokenizerName(JsonNode? preTokenizer)
    {
        if (preTokenizer?["type"]?.GetValue<string>() == "ByteLevel")
            return preTokenizer["use_regex"]?.GetValue<bool>() == false ? null : "gpt-2";
        var split = (preTokenizer?["pretokenizers"] as JsonArray)?
            .FirstOrDefault(p => p?["type"]?.GetValue<string>() == "Split")?["pattern"]?["Regex"]?.GetValue<string>();
        if (split is null) return null;
        if (split.Contains(@"\p{N}{1,3}", StringComparison.Ordinal)) return "llama-bpe";
        if (split.Contains(@"|\p{N}|", StringComparison.Ordinal)) return "qwen2";
        return null;
    }

    // transformers' add_bos_token, else what tokenizer.json's post-processor does (Llama 3 adds its BOS there).
    private static bool AddsBos(JsonObject config, JsonObject json)
    {
        if (config["add_bos_token"] is JsonValue value && value.TryGetValue<bool>(out var add)) return add;
        var single = json["post_processor"]?["single"] as JsonArray
            ?? (json["post_processor"]?["processors"] as JsonArray)?
                .FirstOrDefault(p => p?["type"]?.GetValue<string>() == "TemplateProcessing")?["single"] as JsonArray;
        return single is { Count: > 0 } && single[0]?["SpecialToken"] is not null;
    }

    private static string? TokenText(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonObject o => o["content"]?.GetValue<string>(),
        _ => null,
    };

    private static FineTuneException Unsupported(string why, string path) => new(Diagnostic.Error(
        DiagnosticCodes.GgufUnsupportedTokenizer, $"the tokenizer cannot be written into GGUF: {why}", path),
        ExitCodes.StageFailed);
}
