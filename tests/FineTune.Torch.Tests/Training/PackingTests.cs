using FineTune.TestKit;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Tests.Fakes;
using FineTune.Torch.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Training;

public sealed class PackingTests
{
    private static readonly long[][] Examples =
    [
        [5, 17, 3, 99, 42, 8, 250],
        [1, 64, 128],
        [7, 33, 90, 12, 200, 6, 6, 41, 19, 3, 77],
        [2, 9],
    ];

    [Theory]
    [InlineData(null)]
    [InlineData(4)]
    public void Packed_examples_give_the_logits_each_example_gives_alone(int? slidingWindow)
    {
        using var model = TinyModels.Create(layers: 2);
        var config = model.Config with { SlidingWindow = slidingWindow };
        using var windowed = new LlamaForCausalLM(config);
        windowed.load_state_dict(model.state_dict());
        windowed.eval();

        var ids = Examples.SelectMany(e => e).ToArray();
        var positions = Examples.SelectMany(e => Enumerable.Range(0, e.Length).Select(p => (long)p)).ToArray();
        var documents = Examples.SelectMany((e, d) => Enumerable.Repeat((long)d, e.Length)).ToArray();
        using var _ = no_grad();
        var packed = windowed.Logits(windowed.Hidden(tensor(ids, [1, ids.Length]),
            positionIds: tensor(positions, [1, ids.Length]), documentIds: tensor(documents, [1, ids.Length]))).squeeze(0);

        var offset = 0;
        foreach (var example in Examples)
        {
            var alone = TinyModels.LogitsOf(windowed, example);
            var difference = (packed.narrow(0, offset, example.Length) - alone).abs().max().item<float>();
            Assert.True(difference < 1e-5, $"example at {offset}: logits differ by {difference}");
            offset += example.Length;
        }

        // Without the document mask the later examples would see the earlier ones: the mask is what makes them equal.
        var leaky = windowed.Logits(windowed.Hidden(tensor(ids, [1, ids.Length]), positionIds: tensor(positions, [1, ids.Length]))).squeeze(0);
        var second = TinyModels.LogitsOf(windowed, Examples[1]);
        Assert.True((leaky.narrow(0, Examples[0].Length, Examples[1].Length) - second).abs().max().item<float>() > 1e-3);
    }

    private const int Vocab = 40;

    private static TokenizedDataset Dataset(int count = 20)
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < count; i++)
        {
            var prompt = Enumerable.Range(0, 2 + i % 5).Select(t => 1 + (i * 7 + t) % 10).ToList();
            var answer = Enumerable.Range(0, 2 + i % 6).Select(t => 20 + (i + t * 3) % 19).ToList();
            builder.Add([.. prompt, .. answer], [.. prompt.Select(_ => TokenizedDataset.IgnoreLabel), .. answer]);
        }
        return builder.Build();
    }

    private static (Trainer Trainer, TrainResult Result, RecordingLog Log) Train(bool packing, int batchSize, double epochs, int rowLength = 24,
        int padToMultipleOf = 0)
    {
        var settings = new TrainSettings
        {
            Builtin = new BuiltinModelSettings { HiddenSize = 16, Layers = 2, Heads = 4, KvHeads = 2, IntermediateSize = 32 },
            Epochs = epochs, BatchSize = batchSize, GradientAccumulation = 1, LearningRate = 1e-2, Seed = 5, LogEvery = 1, Packing = packing,
            PadToMultipleOf = padToMultipleOf,
        };
        using var model = new LlamaForCausalLM(TrainStage.BuiltinConfig(settings.Builtin, Vocab));
        model.InitializeWeights(settings.Seed);
        var log = new RecordingLog();
        var trainer = new Trainer(model, Dataset(), settings, CPU, log) { PackLength = rowLength };
        return (trainer, trainer.Train(CancellationToken.None), log);
    }

    [Fact]
    public void The_loss_of_a_packed_batch_equals_the_loss_of_the_same_examples_unpacked()
    {
        // One step over the whole set either way: 20 examples in one padded batch, or all packed rows in one batch.
        var unpacked = Train(packing: false, batchSize: 20, epochs: 1);
        var packed = Train(packing: true, batchSize: 20, epochs: 1);
        Assert.Single(unpacked.Trainer.Losses);
        Assert.Single(packed.Trainer.Losses);
        Assert.Equal(unpacked.Trainer.Losses[0], packed.Trainer.Losses[0], 1e-5);
        Assert.Equal(unpacked.Result.TrainedTokens, packed.Result.TrainedTokens);
        Assert.Equal(unpacked.Result.Tokens, packed.Result.Tokens);
        Assert.Null(unpacked.Result.PackingEfficiency);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Padding_to_a_multiple_changes_no_loss(bool packing)
    {
        // Batches of 3 examples of 4 to 13 tokens, rounded up to 16: every batch gets extra unlabelled padding.
        var plain = Train(packing, batchSize: 3, epochs: 1, padToMultipleOf: 1);
        var padded = Train(packing, batchSize: 3, epochs: 1, padToMultipleOf: 16);
        Assert.Equal(plain.Trainer.Losses.Count, padded.Trainer.Losses.Count);
        for (var i = 0; i < plain.Trainer.Losses.Count; i++)
            Assert.Equal(plain.Trainer.Losses[i], padded.Trainer.Losses[i], 1e-5);
        Assert.Equal(plain.Result.Tokens, padded.Result.Tokens); // padding is not counted as trained-on tokens
    }

    [Theory]
    [InlineData(0, ScalarType.Float32, 17, 17)]
    [InlineData(0, ScalarType.BFloat16, 17, 32)]
    [InlineData(0, ScalarType.BFloat16, 32, 32)]
    [InlineData(8, ScalarType.Float32, 17, 24)]
    [InlineData(1, ScalarType.BFloat16, 17, 17)]
    public void Batch_lengths_round_up_to_the_multiple_and_bfloat16_defaults_to_16(int setting, ScalarType dtype, int tokens,
        int expected)
    {
        var settings = new TrainSettings { PadToMultipleOf = setting };
        using var model = new LlamaForCausalLM(TrainStage.BuiltinConfig(
            new BuiltinModelSettings { HiddenSize = 16, Layers = 1, Heads = 4, KvHeads = 2, IntermediateSize = 32 }, Vocab));
        model.to(dtype);
        var trainer = new Trainer(model, Dataset(), settings, CPU, new RecordingLog());
        Assert.Equal(expected, trainer.PaddedLength(tokens));
    }

    [Fact]
    public void With_packing_a_step_takes_batch_size_rows_and_the_efficiency_is_reported()
    {
        var data = Dataset();
        var rows = Batching.PackedEpochBatches(data, 24, 1, 5, 0).Count;
        var inputTokens = Enumerable.Range(0, data.Count).Sum(e => data.Length(e) - 1);
        Assert.True(rows < data.Count && rows >= Math.Ceiling(inputTokens / 24.0), $"{rows} rows");

        var packed = Train(packing: true, batchSize: 2, epochs: 1);
        Assert.Equal((int)Math.Ceiling(rows / 2.0), packed.Result.Steps);
        Assert.Equal(Math.Round(inputTokens / (rows * 24.0), 4), packed.Result.PackingEfficiency);
        Assert.Contains(packed.Log.Lines, l => l.Contains("packing efficiency") && l.Contains($"{rows} rows of 24 tokens"));
    }

    [Fact]
    public void Packed_rows_hold_every_example_once_within_the_row_length_and_depend_only_on_seed_and_epoch()
    {
        var data = Dataset(60);
        var plan = Batching.PackedEpochBatches(data, 20, 3, 9, 0);
        Assert.Equal(plan.SelectMany(b => b).Select(r => string.Join(",", r)), Batching.PackedEpochBatches(data, 20, 3, 9, 0).SelectMany(b => b).Select(r => string.Join(",", r)));
        Assert.All(plan.Take(plan.Count - 1), b => Assert.Equal(3, b.Length));
        var examples = plan.SelectMany(b => b).SelectMany(r => r).ToList();
        Assert.Equal(Enumerable.Range(0, 60), examples.Order());
        Assert.All(plan.SelectMany(b => b), r => Assert.InRange(r.Sum(e => data.Length(e) - 1), 1, 20));
        // First fit over short examples leaves little room unused.
        var filled = plan.SelectMany(b => b).Sum(r => r.Sum(e => data.Length(e) - 1)) / (20.0 * plan.Sum(b => b.Length));
        Assert.True(filled > 0.9, $"rows {filled:P0} full");

        string Signature(IReadOnlyList<int[][]> p) => string.Join("|", p.SelectMany(b => b).Select(r => string.Join(",", r)));
        Assert.NotEqual(Signature(plan), Signature(Batching.PackedEpochBatches(data, 20, 3, 10, 0)));
        Assert.NotEqual(Signature(plan), Signature(Batching.PackedEpochBatches(data, 20, 3, 9, 1)));
    }
}
