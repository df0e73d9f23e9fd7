using FineTune.Core.Data;
using FineTune.TestKit;
using FineTune.Core.Tokenization;
using FineTune.Tokenizers;
using FineTune.Tokenizers.Tests;
using RustTokenizer = Tokenizers.DotNet.Tokenizer;

namespace FineTune.Core.Tests.Tokenization;

public class VocabularyPruningTests
{
    private static readonly ChatMessage[][] Data =
    [
        [new("user", "你是谁？"), new("assistant", "我是甄嬛，家父是大理寺少卿甄远道。")],
        [new("system", "现在你要扮演皇帝身边的女人--甄嬛"), new("user", "Hello,   world!\n\tTabs 2025"), new("assistant", "皇上万福金安。")],
    ];

    [Theory]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    public void Pruned_tokenizer_encodes_the_data_to_the_same_tokens_renumbered_and_still_encodes_other_text(string name)
    {
        var full = TokenizerAssets.ByName(name);
        using var folder = new TempFolder();
        full.WriteFiles(folder.Path, 128);
        var fullIds = Data.Select(messages => full.Tokenize(messages, TrainOn.Assistant)).ToList();
        var used = fullIds.SelectMany(e => e.Ids).ToHashSet();

        var result = VocabularyPruning.PruneFolder(folder.Path, used);
        var pruned = ChatTokenizer.LoadFolder(folder.Path);

        Assert.Equal(full.VocabSize, result.OriginalSize);
        Assert.Equal(result.PrunedSize, pruned.VocabSize);
        Assert.True(pruned.VocabSize < 2000, $"pruned vocabulary {pruned.VocabSize}");
        for (var i = 0; i < Data.Length; i++)
        {
            var prunedExample = pruned.Tokenize(Data[i], TrainOn.Assistant);
            // Same tokens (by text), same count, same mask: only the numbers changed.
            Assert.Equal(fullIds[i].Ids.Select(id => full.Decode([id], skipSpecialTokens: false)),
                prunedExample.Ids.Select(id => pruned.Decode([id], skipSpecialTokens: false)));
            Assert.Equal(fullIds[i].Labels.Select(l => l == TokenizedDataset.IgnoreLabel), prunedExample.Labels.Select(l => l == TokenizedDataset.IgnoreLabel));
        }

        const string unseen = "Entirely new text: 🎉 Ω ąę 3.14159 <|im_end|>";
        var ids = pruned.Encode(unseen);
        Assert.Equal(unseen, pruned.Decode(ids, skipSpecialTokens: false));
        Assert.Equal(pruned.StopTokenIds.Select(id => pruned.Decode([id], skipSpecialTokens: false)), full.StopTokenIds.Select(id => full.Decode([id], skipSpecialTokens: false)));
        Assert.Equal(full.Decode([full.PadTokenId], false), pruned.Decode([pruned.PadTokenId], false));
    }

    [Theory]
    [InlineData("llama2")]
    [InlineData("mistral3")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void Pruned_tokenizer_json_loads_and_matches_the_rust_library(string name)
    {
        const string data = "The quick brown fox, 你好世界！ 1234 👍🏽\n\tHello again.";
        using var folder = new TempFolder();
        File.Copy(TokenizerJsonOf(name), folder.File("tokenizer.json"));
        var full = HfTokenizer.Load(TokenizerJsonOf(name));
        var fullIds = full.Encode(data).Ids;

        var result = VocabularyPruning.PruneFolder(folder.Path, fullIds.ToHashSet());
        var pruned = HfTokenizer.Load(folder.File("tokenizer.json"));
        using var rust = new RustTokenizer(folder.File("tokenizer.json"));

        Assert.Equal(result.PrunedSize, pruned.VocabSize);
        Assert.True(pruned.VocabSize < full.VocabSize);
        var prunedIds = pruned.Encode(data).Ids;
        Assert.Equal(fullIds.Select(id => full.IdToToken(id)), prunedIds.Select(id => pruned.IdToToken(id)));
        foreach (var text in new[] { data, "other text the data never had: ünïcödé ✓ 𝐀", "" })
        {
            Assert.Equal(rust.Encode(text).Select(id => (int)id), pruned.Encode(text, addSpecialTokens: true).Ids);
            Assert.Equal(full.Decode(full.Encode(text).Ids), pruned.Decode(pruned.Encode(text).Ids));
        }
    }

    private static string TokenizerJsonOf(string name) => name switch
    {
        "qwen3" => Path.Combine(TokenizerAssets.Qwen3Folder, "tokenizer.json"),
        "llama3" => HfFixtures.WriteTemp(HfFixtures.Llama3Style(ignoreMerges: true), name),
        "llama2" => HfFixtures.WriteTemp(HfFixtures.Llama2Style(), name),
        "mistral3" => HfFixtures.WriteTemp(HfFixtures.MistralV3Style(), name),
        _ => throw new ArgumentException(name),
    };
}
