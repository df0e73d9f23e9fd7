using FineTune.Torch.Generation;
using FineTune.Torch.Tests.Fakes;

namespace FineTune.Torch.Tests.Generation;

public sealed class BatchedGeneratorTests
{
    private static readonly int[][] Prompts =
    [
        [5, 17, 200, 33, 90, 12, 7],
        [42],
        [100, 101, 102],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 22],
        [250, 3],
    ];

    private static List<int> Alone(FineTune.Torch.Models.LlamaForCausalLM model, int[] prompt, int maxNewTokens, int[] stops,
        double penalty = 1.0) =>
        TextGenerator.GenerateIds(model, prompt, new GenerationOptions(MaxNewTokens: maxNewTokens, StopTokenIds: stops,
            RepetitionPenalty: penalty));

    [Theory]
    [InlineData(16, 1.0)]
    [InlineData(2, 1.0)]
    [InlineData(16, 1.3)]
    public void Batched_greedy_answers_equal_one_at_a_time_greedy(int batchSize, double penalty)
    {
        using var model = TinyModels.Create(tied: true);
        // Stop tokens that some rows really produce mid-answer, so rows finish at different steps.
        var free = Prompts.Select(p => Alone(model, p, 12, [], penalty)).ToArray();
        int[] stops = [free[0][3], free[3][6]];
        var expected = Prompts.Select(p => Alone(model, p, 12, stops, penalty)).ToArray();
        Assert.Contains(expected, e => e.Count < 12);
        Assert.Contains(expected, e => e.Count == 12);

        var batched = BatchedGenerator.GenerateGreedy(model, Prompts, 12, stops, ByteChatTokenizer.Pad, batchSize,
            penalty);

        Assert.Equal(expected.Length, batched.Length);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], batched[i]);
    }

    [Fact]
    public void Batched_generation_reports_progress_and_handles_zero_tokens()
    {
        using var model = TinyModels.Create();
        var done = new List<int>();
        var none = BatchedGenerator.GenerateGreedy(model, Prompts, 0, [], ByteChatTokenizer.Pad, 2,
            onFinished: done.Add);
        Assert.All(none, Assert.Empty);
        Assert.Equal([2, 4, 5], done);
    }
}
