using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using FineTune.Torch.Tests.Fakes;

namespace FineTune.Torch.Tests.Chat;

public sealed class ChatSessionTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ft-chat-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Answers_with_the_real_tokenizer_from_an_export_layout_folder()
    {
        var tokenizer = ChatTokenizer.LoadGpt2();
        tokenizer.WriteFiles(_dir, modelMaxLength: 256);
        var config = TinyModels.Config(tied: true);
        using (var model = new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = tokenizer.VocabSize, HiddenSize = config.HiddenSize, IntermediateSize = config.IntermediateSize,
            NumHiddenLayers = 1, NumAttentionHeads = 4, NumKeyValueHeads = 2, TieWordEmbeddings = true,
        }))
        {
            model.InitializeWeights(1);
            ModelFolder.Save(model, _dir);
        }
        File.WriteAllText(Path.Combine(_dir, "generation_config.json"), """{"max_new_tokens": 7}""");

        using var session = ChatSession.Open(_dir);
        Assert.Equal(7, session.DefaultMaxNewTokens);
        var pieces = new List<string>();
        var result = session.Answer("Hello there", onText: pieces.Add);

        Assert.InRange(result.TokenIds.Count, 1, 7);
        Assert.Equal(result.Text, string.Concat(pieces));
        var promptIds = tokenizer.EncodeConversation([new("user", "Hello there")], addGenerationPrompt: true);
        var expected = TextGenerator.GenerateIds(session.Model, promptIds, new GenerationOptions(MaxNewTokens: 7, StopTokenIds: tokenizer.StopTokenIds));
        Assert.Equal(expected, result.TokenIds);
    }

    [Fact]
    public void A_folder_missing_files_names_them()
    {
        using (var model = TinyModels.Create()) ModelFolder.Save(model, _dir);
        var error = Assert.Throws<FineTuneException>(() => ChatSession.Open(_dir, loadTokenizer: _ => new ByteChatTokenizer()));
        Assert.Equal("FT0602", error.Diagnostics[0].Code);
        Assert.Contains("lacks tokenizer.json, tokenizer_config.json", error.Message);

        var missing = Assert.Throws<FineTuneException>(() => ChatSession.Open(Path.Combine(_dir, "nope")));
        Assert.Equal("FT0601", missing.Diagnostics[0].Code);
    }

    [Fact]
    public void Answers_greedily_by_default_and_streams_the_text()
    {
        using (var model = TinyModels.Create()) ModelFolder.Save(model, _dir);
        ByteChatTokenizer.WriteFolder(_dir);
        var fake = new ByteChatTokenizer();
        using var session = ChatSession.Open(_dir, loadTokenizer: _ => fake);
        var pieces = new List<string>();
        var first = session.Answer("Hi", new GenerationOptions(MaxNewTokens: 10), pieces.Add);
        var second = session.Answer("Hi", new GenerationOptions(MaxNewTokens: 10));
        Assert.Equal(first.TokenIds, second.TokenIds);
        Assert.Equal(first.Text, string.Concat(pieces));
        Assert.Equal(ChatSession.FallbackMaxNewTokens, session.DefaultMaxNewTokens);
    }
}
