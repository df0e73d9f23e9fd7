using FineTune.Torch.Generation;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Generation;

public sealed class RepetitionPenaltyTests
{
    [Fact]
    public void Present_tokens_are_divided_when_positive_and_multiplied_when_negative_as_transformers_does()
    {
        using var logits = tensor(new float[] { 2.0f, -1.0f, 0.5f, -3.0f, 4.0f, 0f });
        // Token 1 appears twice: the penalty applies once, as transformers' gather/scatter does.
        using var penalised = TextGenerator.ApplyRepetitionPenalty(logits, [0, 1, 1, 4, 5], 2.0);

        Assert.Equal(new float[] { 1.0f, -2.0f, 0.5f, -3.0f, 2.0f, 0f }, penalised.data<float>().ToArray());
        Assert.Equal(new float[] { 2.0f, -1.0f, 0.5f, -3.0f, 4.0f, 0f }, logits.data<float>().ToArray()); // the input is left alone
    }

    [Fact]
    public void A_penalty_below_one_favours_present_tokens_and_one_changes_nothing()
    {
        using var logits = tensor(new float[] { 1.5f, -0.5f, 3.0f });
        using var favoured = TextGenerator.ApplyRepetitionPenalty(logits, [0, 1], 0.5);
        Assert.Equal(new float[] { 3.0f, -0.25f, 3.0f }, favoured.data<float>().ToArray());
        using var same = TextGenerator.ApplyRepetitionPenalty(logits, [0, 1, 2], 1.0);
        Assert.Equal(logits.data<float>().ToArray(), same.data<float>().ToArray());
    }
}
