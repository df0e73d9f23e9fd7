using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Core.Tokenization;

/// <summary>
/// Shrinks a BPE tokenizer to the tokens a dataset uses. Kept: the 256 byte tokens (single characters, plus the
/// &lt;0xAB&gt; tokens and unk of byte_fallback models), every token the data
/// was encoded with, every token on the merge path that builds those, and all added tokens; merges whose result is
/// not kept are dropped; ids are renumbered densely in the original order.
/// <para>
/// Why it is exact: BPE applies, at each step, the lowest-ranked merge among adjacent pairs. Any merge that fires on
/// the data produces a token that ends up in the output or on the path to one, so it is kept; dropped merges never
/// fired on the data. The pruned tokenizer therefore encodes the data to the same tokens (renumbered), and still
/// encodes any other text, in smaller pieces where needed, because every byte token is kept.
/// </para>
/// For a small model the embedding and the output head shrink from ~50,000 (GPT-2) or ~150,000 (Qwen) rows to a
/// few thousand, which is most of its compute on a CPU.
/// </summary>
internal static class VocabularyPruning
{
    public sealed record Result(int OriginalSize, int PrunedSize);

    /// <summary>Rewrites tokenizer.json (and the ids in tokenizer_config.json) in <paramref name="folder"/> in
    /// place.</summary>
    public static Result PruneFolder(string folder, IReadOnlySet<int> usedIds)
    {
        var tokenizerPath = Path.Combine(folder, ChatTokenizer.TokenizerJsonFile);
        var tokenizer = JsonNode.Parse(File.ReadAllText(tokenizerPath))!.AsObject();
        var model = tokenizer["model"]!.AsObject();
        var vocab = model["vocab"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<int>(),
            StringComparer.Ordinal);
        var tokenOf = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        var added = tokenizer["added_tokens"]?.AsArray().Select(t => (Id: t!["id"]!.GetValue<int>(),
            Content: t["content"]!.GetValue<string>())).ToList() ?? [];

        var merges = new List<(string Left, string Right, JsonNode Node)>();
        foreach (var merge in model["merges"]?.AsArray() ?? [])
        {
            if (merge is JsonArray pair) merges.Add((pair[0]!.GetValue<string>(), pair[1]!.GetValue<string>(), merge));
            else
            {
                var text = merge!.GetValue<string>();
                var space = text.IndexOf(' ', 1); // byte-level spellings never hold a real space
                merges.Add((text[..space], text[(space + 1)..], merge));
            }
        }
        var mergeBuilding = new Dictionary<string, (string Left, string Right)>(StringComparer.Ordinal);
        foreach (var (left, right, _) in merges) mergeBuilding.TryAdd(left + right, (left, right));

        var keep = new HashSet<string>(vocab.Keys.Where(token => token.Length == 1), StringComparer.Ordinal);
        // SentencePiece-style BPE (Llama 2, Mistral) spells unknown characters as <0xAB> byte tokens or <unk>.
        if (model["byte_fallback"]?.GetValue<bool>() == true)
            keep.UnionWith(vocab.Keys.Where(token => token.Length == 6
                && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'));
        if (model["unk_token"] is JsonValue unknown && unknown.GetValue<string>() is { } unknownToken
            && vocab.ContainsKey(unknownToken)) keep.Add(unknownToken);
        foreach (var (_, content) in added)
            // e.g. GPT-2's <|endoftext|>, also in its model vocabulary
            if (vocab.ContainsKey(content)) keep.Add(content);
        var pending = new Stack<string>();
        foreach (var id in usedIds)
            if (tokenOf.TryGetValue(id, out var token) && keep.Add(token)) pending.Push(token);
        while (pending.Count > 0)
        {
            if (!mergeBuilding.TryGetValue(pending.Pop(), out var parts)) continue;
            if (keep.Add(parts.Left)) pending.Push(parts.Left);
            if (keep.Add(parts.Right)) pending.Push(parts.Right);
        }

        var newId = new Dictionary<int, int>();
        var renumbered = new JsonObject();
        foreach (var (token, oldId) in vocab.Where(kv => keep.Contains(kv.Key)).OrderBy(kv => kv.Value))
        {
            newId[oldId] = newId.Count;
            renumbered[token] = newId[oldId];
        }
        var next = newId.Count;
        foreach (var (oldId, _) in added.OrderBy(a => a.Id))
            if (!newId.ContainsKey(oldId)) newId[oldId] = next++;

        model["vocab"] = renumbered;
        model["merges"] = new JsonArray(merges.Where(m => keep.Contains(m.Left + m.Right) && keep.Contains(m.Left)
            && keep.Contains(m.Right))
            .Select(m => m.Node.DeepClone()).ToArray());
        foreach (var token in tokenizer["added_tokens"]?.AsArray() ?? [])
            token!["id"] = newId[token["id"]!.GetValue<int>()];
        RenumberPostProcessor(tokenizer["post_processor"], newId);
        Write(tokenizerPath, tokenizer);

        var configPath = Path.Combine(folder, ChatTokenizer.TokenizerConfigFile);
        if (File.Exists(configPath) && JsonNode.Parse(File.ReadAllText(configPath)) is JsonObject config
            && config["added_tokens_decoder"] is JsonObject decoder)
        {
            var renumberedDecoder = new JsonObject();
            foreach (var (key, value) in decoder.ToList())
                if (int.TryParse(key, out var oldId) && newId.TryGetValue(oldId, out var id))
                    renumberedDecoder[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] =
                        value!.DeepClone();
            config["added_tokens_decoder"] = renumberedDecoder;
            Write(configPath, config);
        }
        return new Result(Math.Max(vocab.Values.DefaultIfEmpty(-1).Max(),
            added.Select(a => a.Id).DefaultIfEmpty(-1).Max()) + 1, next);
    }

    // TemplateProcessing (Llama 3) names the ids of the special tokens it inserts.
    private static void RenumberPostProcessor(JsonNode? processor, Dictionary<int, int> newId)
    {
        if (processor is not JsonObject node) return;
        if (node["special_tokens"] is JsonObject specials)
            foreach (var (_, special) in specials)
                if (special?["ids"] is JsonArray ids)
                    for (var i = 0; i < ids.Count; i++)
                        if (newId.TryGetValue(ids[i]!.GetValue<int>(), out var id)) ids[i] = id;
        foreach (var child in node["processors"]?.AsArray() ?? []) RenumberPostProcessor(child, newId);
    }

    private static void Write(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(JsonText.Indented) + "\n");
}
