using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using FineTune.Torch.Tests.Fakes;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Generation;

public sealed class TextGeneratorTests
{
    private static readonly int[] Prompt = [258, 72, 105, 33, 256, 259];

    /// <summary>The slow reference: re-run the whole sequence for every new token, no cache.</summary>
    private static List<int> GreedyByFullForward(LlamaForCausalLM model, IReadOnlyList<int> prompt, int maxNewTokens, int[] stops)
    {
        var sequence = prompt.Select(i => (long)i).ToList();
        var generated = new List<int>();
        for (var step = 0; step < maxNewTokens; step++)
        {
            var logits = TinyModels.LogitsOf(model, [.. sequence]);
            var next = (int)logits[-1].argmax().item<long>();
            generated.Add(next);
            sequence.Add(next);
            if (stops.Contains(next)) break;
        }
        return generated;
    }

    [Theory]
    [InlineData(false, 3)]
    [InlineData(true, 11)]
    public void Greedy_with_the_cache_equals_greedy_by_full_re_forward(bool tied, long seed)
    {
        using var model = TinyModels.Create(tied, seed);
        var expected = GreedyByFullForward(model, Prompt, 24, []);
        var actual = TextGenerator.GenerateIds(model, Prompt, new GenerationOptions(MaxNewTokens: 24));
        Assert.Equal(expected, actual);
        Assert.True(expected.Distinct().Count() > 1, "the tiny model should not repeat one token; the test would be weak");
    }

    [Fact]
    public void Generation_stops_at_a_stop_token_and_leaves_it_out_of_the_text()
    {
        using var model = TinyModels.Create();
        var free = TextGenerator.GenerateIds(model, Prompt, new GenerationOptions(MaxNewTokens: 12));
        // Declare the 4th generated token a stop token: generation must end right there.
        var stop = free[3];
        var firstStop = free.IndexOf(stop);
        var tokenizer = new ByteChatTokenizer { StopTokenIds = [stop] };
        var pieces = new List<string>();
        var result = new TextGenerator(model, tokenizer).Generate(Prompt, new GenerationOptions(MaxNewTokens: 12), pieces.Add);

        Assert.Equal(free.Take(firstStop + 1), result.TokenIds);
        Assert.Equal("stop", result.FinishReason);
        Assert.Equal(tokenizer.Decode(free.Take(firstStop).ToList()), result.Text);
        Assert.Equal(result.Text, string.Concat(pieces));
    }

    [Fact]
    public void Max_new_tokens_ends_generation_with_reason_length()
    {
        using var model = TinyModels.Create();
        var result = new TextGenerator(model, new ByteChatTokenizer { StopTokenIds = [] }).Generate(Prompt, new GenerationOptions(MaxNewTokens: 5));
        Assert.Equal(5, result.TokenIds.Count);
        Assert.Equal("length", result.FinishReason);
    }

    [Fact]
    public void Sampling_is_reproducible_from_its_seed_and_top_p_near_zero_is_greedy()
    {
        using var model = TinyModels.Create();
        var sample = (long seed) => TextGenerator.GenerateIds(model, Prompt, new GenerationOptions(MaxNewTokens: 16, Temperature: 1.5, Seed: seed));
        Assert.Equal(sample(5), sample(5));
        Assert.NotEqual(sample(5), sample(6));

        var greedy = TextGenerator.GenerateIds(model, Prompt, new GenerationOptions(MaxNewTokens: 16));
        var nucleus = TextGenerator.GenerateIds(model, Prompt, new GenerationOptions(MaxNewTokens: 16, Temperature: 1.5, TopP: 1e-6, Seed: 5));
        Assert.Equal(greedy, nucleus);
    }

    [Fact]
    public void Streamed_pieces_never_split_a_character()
    {
        var tokenizer = new ByteChatTokenizer();
        var ids = tokenizer.Encode("héllo 嬛嬛 😀!");
        var text = new IncrementalText(tokenizer);
        var pieces = ids.Select(text.Add).Where(p => p.Length > 0).ToList();
        pieces.Add(text.Flush());

        Assert.Equal("héllo 嬛嬛 😀!", string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Contains("嬛", pieces); // held back until its third byte, then emitted whole
    }

    [Fact]
    public void Text_cut_inside_a_character_ends_before_it()
    {
        var tokenizer = new ByteChatTokenizer();
        // 嬛 is three UTF-8 bytes (E5 AC 9B): the ids stop after two of them, as max_new_tokens can.
        var ids = tokenizer.Encode("我是嬛").SkipLast(1).ToList();
        var text = new IncrementalText(tokenizer);
        var pieces = ids.Select(text.Add).Where(p => p.Length > 0).ToList();
        pieces.Add(text.Flush(cutOff: true));

        Assert.Equal("我是\uFFFD", tokenizer.Decode(ids));
        Assert.Equal("我是", string.Concat(pieces));
        Assert.Equal("我是", IncrementalText.WithoutIncompleteTail(tokenizer.Decode(ids)));
    }
}
