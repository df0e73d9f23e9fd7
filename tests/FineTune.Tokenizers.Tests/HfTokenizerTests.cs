using System.Text;
using System.Text.Json.Nodes;
using static FineTune.Tokenizers.Tests.HfTokenizerGoldenTests;
using FineTune.TestKit;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace FineTune.Tokenizers.Tests;

public class HfTokenizerTests
{
    [Fact]
    public void Offsets_point_into_the_original_text_through_nfc()
    {
        const string text = "cafe\u0301 ok<|im_end|>";
        var encoding = Our("qwen3").Encode(text);
        // Byte-level offsets without trimming tile the input: each token starts where the previous one ended (or
        // repeats its range when it holds another part of the same character).
        Assert.Equal(0, encoding.Offsets[0].Start);
        Assert.Equal(text.Length, encoding.Offsets[^1].End);
        for (var i = 1; i < encoding.Offsets.Length; i++)
            Assert.True(encoding.Offsets[i].Start == encoding.Offsets[i - 1].End || encoding.Offsets[i] == encoding.Offsets[i - 1], $"token {i}: {encoding.Offsets[i]}");
        // The composed é covers both input units; " ok" and the special token are where they were typed.
        Assert.Contains((5, 8), encoding.Offsets);
        Assert.Equal((8, 18), encoding.Offsets[^1]);
        Assert.Equal(151645, encoding.Ids[^1]);
        Assert.DoesNotContain(encoding.Offsets, o => o.Start < 5 && o.End > 3 && o.End != 5);
    }

    [Fact]
    public void Sentencepiece_offsets_cover_the_words_and_template_tokens_get_zero()
    {
        var tokenizer = Our("llama2");
        var encoding = tokenizer.Encode("The dog", addSpecialTokens: true);
        Assert.Equal(tokenizer.TokenToId("<s>"), encoding.Ids[0]);
        Assert.Equal((0, 0), encoding.Offsets[0]);
        var words = encoding.Ids.Skip(1).Select(id => tokenizer.IdToToken(id)).ToList();
        Assert.Equal("▁The▁dog", string.Concat(words));
        // Normalized "▁The▁dog": the prepended ▁ rides on "T" (0, 1), the ▁ that replaced the space is (3, 4).
        int[] normalizedToOriginalStart = [0, 0, 1, 2, 3, 4, 5, 6];
        int[] normalizedToOriginalEnd = [1, 1, 2, 3, 4, 5, 6, 7];
        var position = 0;
        for (var i = 0; i < words.Count; i++)
        {
            var end = position + words[i]!.Length;
            Assert.Equal((normalizedToOriginalStart[position], normalizedToOriginalEnd[end - 1]), encoding.Offsets[i + 1]);
            position = end;
        }
    }

    [Fact]
    public void Bos_ids_come_from_the_template_and_only_with_add_special_tokens()
    {
        Assert.Equal([1], Our("llama2").BosIds);
        Assert.Equal([Our("llama3").TokenToId("<|begin_of_text|>")!.Value], Our("llama3").BosIds);
        Assert.Empty(Our("qwen3").BosIds);
        Assert.DoesNotContain(1, Our("llama2").Encode("hello").Ids);
        Assert.Equal(1, Our("llama2").Encode("hello", addSpecialTokens: true).Ids[0]);
    }

    [Fact]
    public void Decode_keeps_special_tokens_when_asked()
    {
        var tokenizer = Our("qwen3");
        var ids = tokenizer.Encode("<|im_start|>user\nhi<|im_end|>").Ids;
        Assert.Equal("user\nhi", tokenizer.Decode(ids));
        Assert.Equal("<|im_start|>user\nhi<|im_end|>", tokenizer.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("<s> The dog", Our("llama2").Decode(Our("llama2").Encode("The dog", addSpecialTokens: true).Ids, skipSpecialTokens: false));
    }

    public static TheoryData<string, string> StreamingCases() => new()
    {
        { "qwen3", "家父是大理寺少卿 👩‍👩‍👧 é\n" },
        { "gpt2", "emoji 👩‍👩‍👧 and 🏳️‍🌈" },
        { "llama2", "The 你好 dog 👍🏽\n\tend" },
        { "mistral3", " leading and 世界 [INST] x [/INST]" },
        { "llama3", "It's 1234567 zebra 日本語" },
    };

    [Theory]
    [MemberData(nameof(StreamingCases))]
    public void Streaming_decode_returns_only_complete_text_and_adds_up_to_decode(string name, string text)
    {
        var tokenizer = Our(name);
        var ids = tokenizer.Encode(text, addSpecialTokens: true).Ids;
        var stream = tokenizer.CreateStreamingDecoder();
        var chunks = ids.Select(stream.Push).ToList();
        Assert.Equal(tokenizer.Decode(ids), string.Concat(chunks));
        Assert.DoesNotContain(chunks, c => c.Contains('\uFFFD'));
        // Multi-byte characters split over several ids: some pushes must wait for the rest.
        Assert.Contains("", chunks);
    }

    [Fact]
    public void Streaming_decode_holds_back_a_partial_character()
    {
        var tokenizer = Our("llama2");
        var ids = tokenizer.Encode("你").Ids; // ▁ then three <0x..> byte tokens
        Assert.True(ids.Length >= 3, string.Join(",", ids));
        var stream = tokenizer.CreateStreamingDecoder();
        var chunks = ids.Select(stream.Push).ToList();
        Assert.Equal("你", chunks[^1].TrimStart());
        Assert.All(chunks.Take(chunks.Count - 1), c => Assert.DoesNotContain('你', c));
    }

    /// <summary>lstrip/rstrip/single_word/normalized added tokens, against the Rust library.</summary>
    [Theory]
    [InlineData("a <mask> b")]
    [InlineData("a  <mask>  b <mask>")]
    [InlineData("[R]   x [R]")]
    [InlineData("word words sword word_ (word) word")]
    [InlineData("cafe\u0301 café CAFÉ")]
    [InlineData("<mask><mask>[R][R]word")]
    public void Added_token_flags_match_the_rust_library(string text)
    {
        var json = JsonNode.Parse(HfFixtures.Llama3Style(ignoreMerges: true))!.AsObject();
        var next = json["added_tokens"]!.AsArray().Max(t => t!["id"]!.GetValue<int>()) + 1;
        json["normalizer"] = new JsonObject { ["type"] = "NFC" };
        json["added_tokens"]!.AsArray().Add(Added(next, "<mask>", special: true, lstrip: true));
        json["added_tokens"]!.AsArray().Add(Added(next + 1, "[R]", special: true, rstrip: true));
        json["added_tokens"]!.AsArray().Add(Added(next + 2, "word", special: false, singleWord: true));
        json["added_tokens"]!.AsArray().Add(Added(next + 3, "café", special: false, normalized: true));
        using var folder = new TempFolder();
        var path = folder.Write("tokenizer.json", json.ToJsonString());
        using var rust = new RustTokenizer(path);
        var ours = HfTokenizer.Load(path);
        Assert.Equal(rust.Encode(text).Select(id => (int)id), ours.Encode(text, addSpecialTokens: true).Ids);
        Assert.Equal(rust.Decode(rust.Encode(text)), ours.Decode(ours.Encode(text, addSpecialTokens: true).Ids));
    }

    private static JsonObject Added(int id, string content, bool special, bool lstrip = false, bool rstrip = false, bool singleWord = false, bool normalized = false) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = singleWord, ["lstrip"] = lstrip, ["rstrip"] = rstrip, ["normalized"] = normalized, ["special"] = special,
    };

    [Theory]
    [InlineData("normalizer", """{"type":"Precompiled","precompiled_charsmap":""}""", "normalizer 'Precompiled' is not supported")]
    [InlineData("pre_tokenizer", """{"type":"BertPreTokenizer"}""", "pre_tokenizer 'BertPreTokenizer' is not supported")]
    [InlineData("model", """{"type":"Unigram","vocab":[]}""", "model 'Unigram' is not supported")]
    [InlineData("post_processor", """{"type":"RobertaProcessing"}""", "post_processor 'RobertaProcessing' is not supported")]
    [InlineData("decoder", """{"type":"WordPiece"}""", "decoder 'WordPiece' is not supported")]
    public void Unsupported_components_are_named_in_the_error(string component, string replacement, string message)
    {
        var json = JsonNode.Parse(HfFixtures.Llama2Style())!.AsObject();
        json[component] = JsonNode.Parse(replacement);
        using var folder = new TempFolder();
        var path = folder.Write("tokenizer.json", json.ToJsonString());
        var error = Assert.Throws<TokenizerJsonException>(() => HfTokenizer.Load(path));
        Assert.Equal(path, error.Origin);
        Assert.Contains(message, error.Message);
    }

    [Theory]
    [InlineData("added id int.MaxValue", "id 2147483647, outside 0..16777215")]
    [InlineData("added id -1", "id -1, outside")]
    [InlineData("vocab id -7", "id -7, outside")]
    [InlineData("vocab id 2^30", "id 1073741824, outside")]
    [InlineData("vocab id 2^40", "malformed")]
    [InlineData("merge of one token", "is not a pair of tokens")]
    [InlineData("merge of numbers", "malformed")]
    public void Hostile_ids_and_merges_are_refused_before_anything_is_allocated(string change, string message)
    {
        var json = JsonNode.Parse(HfFixtures.Llama2Style())!.AsObject();
        var vocab = json["model"]!["vocab"]!.AsObject();
        var firstToken = vocab.First().Key;
        switch (change)
        {
            case "added id int.MaxValue": json["added_tokens"]!.AsArray().Add(Added(int.MaxValue, "<x>", true)); break;
            case "added id -1": json["added_tokens"]!.AsArray().Add(Added(-1, "<x>", true)); break;
            case "vocab id -7": vocab[firstToken] = -7; break;
            case "vocab id 2^30": vocab[firstToken] = 1 << 30; break;
            case "vocab id 2^40": vocab[firstToken] = 1L << 40; break;
            case "merge of one token": json["model"]!["merges"] = new JsonArray(new JsonArray("a")); break;
            case "merge of numbers": json["model"]!["merges"] = new JsonArray(1, 2); break;
        }
        using var folder = new TempFolder();
        var path = folder.Write("tokenizer.json", json.ToJsonString());
        var error = Assert.Throws<TokenizerJsonException>(() => HfTokenizer.Load(path));
        Assert.Equal(path, error.Origin);
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void A_file_over_the_size_cap_is_refused_without_being_read()
    {
        using var folder = new TempFolder();
        var path = Path.Combine(folder.Path, "tokenizer.json");
        using (var file = File.Create(path)) file.SetLength(HfTokenizer.MaxFileBytes + 1); // sparse: no disk used
        var error = Assert.Throws<TokenizerJsonException>(() => HfTokenizer.Load(path));
        Assert.Contains($"more than the {HfTokenizer.MaxFileBytes} read", error.Message);
    }

    [Fact]
    public void Absent_components_mean_none()
    {
        var json = JsonNode.Parse(HfFixtures.MistralV3Style())!.AsObject();
        json.Remove("normalizer");
        json.Remove("post_processor");
        var tokenizer = HfTokenizer.FromJson(json.ToJsonString(), "inline");
        Assert.Empty(tokenizer.BosIds);
        Assert.Equal(Our("mistral3").Encode("The dog").Ids, tokenizer.Encode("The dog", addSpecialTokens: true).Ids);
    }

    [Fact]
    public void Token_lookup_covers_vocab_and_added_tokens()
    {
        var tokenizer = Our("qwen3");
        Assert.Equal(151645, tokenizer.TokenToId("<|im_end|>"));
        Assert.Equal("<|im_end|>", tokenizer.IdToToken(151645));
        Assert.Equal("Ġthe", tokenizer.IdToToken(tokenizer.TokenToId("Ġthe")!.Value));
        Assert.Null(tokenizer.TokenToId("no such token"));
        Assert.Null(tokenizer.IdToToken(-1));
        Assert.Equal(tokenizer.AddedTokens.Max(t => t.Id) + 1, tokenizer.VocabSize);
        Assert.Contains(tokenizer.AddedTokens, t => t.Content == "<|im_end|>" && t.Special && !t.Normalized);
    }

    [Fact]
    public void Empty_text_encodes_to_nothing_or_only_the_template()
    {
        Assert.Empty(Our("qwen3").Encode("").Ids);
        Assert.Equal([1], Our("llama2").Encode("", addSpecialTokens: true).Ids);
        Assert.Equal("", Our("llama2").Decode([]));
        Assert.Equal(Encoding.UTF8.GetByteCount("x"), Our("gpt2").Encode("x").Ids.Length);
    }
}
