using FineTune.Core.Data;
using FineTune.TestKit;
using FineTune.Core.Tokenization;

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
        var full = Tokenizers.ByName(name);
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
}
