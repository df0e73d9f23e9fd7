using System.Text.Json.Nodes;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.TestKit;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Training;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Training;

/// <summary>eval_steps: the validation loss every N optimizer steps, in metrics.jsonl, without changing training.</summary>
public sealed class EvalStepsTests
{
    private static TokenizedDataset Dataset(int examples, int offset)
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < examples; i++)
        {
            var ids = Enumerable.Range(0, 5 + i % 4).Select(t => (7 * (i + offset) + 5 * t) % 250 + 3).ToArray();
            builder.Add(ids, ids.Select((id, t) => t < 2 ? TokenizedDataset.IgnoreLabel : id).ToArray());
        }
        return builder.Build();
    }

    private static TrainSettings Settings(int evalSteps) => new()
    {
        BatchSize = 2, GradientAccumulation = 1, MaxSteps = 4, LearningRate = 1e-2, Seed = 3, LogEvery = 1,
        EvalSteps = evalSteps,
    };

    /// <summary>Mean cross-entropy over the labelled next tokens, one example at a time (no padding, no batching).</summary>
    private static double ReferenceLoss(LlamaForCausalLM model, TokenizedDataset data)
    {
        using var noGrad = no_grad();
        double sum = 0;
        var count = 0;
        for (var e = 0; e < data.Count; e++)
        {
            var ids = data.Ids(e).ToArray();
            var labels = data.Labels(e).ToArray();
            var positions = Enumerable.Range(0, ids.Length - 1).Where(p => labels[p + 1] != TokenizedDataset.IgnoreLabel).Select(p => (long)p).ToArray();
            var hidden = model.Hidden(tensor(ids[..^1].Select(i => (long)i).ToArray(), [1, ids.Length - 1]));
            var logits = model.Logits(hidden.squeeze(0).index_select(0, tensor(positions)));
            sum += F.cross_entropy(logits, tensor(positions.Select(p => (long)labels[p + 1]).ToArray()), reduction: nn.Reduction.Sum).item<float>();
            count += positions.Length;
        }
        return sum / count;
    }

    [Fact]
    public void Validation_loss_every_n_steps_is_logged_and_training_is_unchanged()
    {
        using var folder = new TempFolder();
        var train = Dataset(6, 0);
        var validation = Dataset(5, 100);
        var config = Fakes.TinyModels.Config(layers: 1);

        using var plain = new LlamaForCausalLM(config);
        plain.InitializeWeights(7);
        var without = new Trainer(plain, train, Settings(0), CPU, new RecordingLog());
        without.Train(CancellationToken.None);

        using var model = new LlamaForCausalLM(config);
        model.InitializeWeights(7);
        var metrics = Path.Combine(folder.Path, "metrics.jsonl");
        var log = new RecordingLog();
        var with = new Trainer(model, train, Settings(2), CPU, log)
        {
            MetricsPath = metrics,
            MeasureValidationLoss = () => EvaluateStage.ValidationLoss(model, validation, 0, padTokenId: 0).Loss,
        };
        with.Train(CancellationToken.None);

        Assert.Equal(without.Losses, with.Losses); // evaluating (eval mode, no grad) leaves training bit for bit as it was
        Assert.Equal([2, 4], with.EvalLosses.Select(e => e.Step));
        var evalLines = File.ReadLines(metrics).Select(l => JsonNode.Parse(l)!.AsObject()).Where(o => o.ContainsKey("eval_loss")).ToList();
        Assert.Equal([2, 4], evalLines.Select(o => o["step"]!.GetValue<int>()));
        Assert.All(evalLines, o => Assert.Equal(["step", "epoch", "eval_loss"], o.Select(p => p.Key)));
        Assert.Equal(4 * 2 / 6.0, evalLines[1]["epoch"]!.GetValue<double>(), 4); // 4 steps of 2 of 6 examples
        // The last evaluation saw the final model: the loss equals a plain per-example computation of it.
        Assert.Equal(ReferenceLoss(model, validation), evalLines[1]["eval_loss"]!.GetValue<double>(), 4);
        Assert.Contains(log.Lines, l => l.Contains("step 4: eval_loss"));
    }

    [Fact]
    public void An_epochs_leftover_batch_is_a_short_step_of_its_own_as_in_transformers()
    {
        // 6 examples at batch 2 are 3 batches; accumulation 2: each epoch is a step of 2 batches and one of 1.
        // The schedule counts 3 // 2 = 1 step per epoch, so 4 epochs are 4 steps: two whole epochs.
        using var folder = new TempFolder();
        using var model = new LlamaForCausalLM(Fakes.TinyModels.Config(layers: 1));
        model.InitializeWeights(7);
        var metrics = Path.Combine(folder.Path, "metrics.jsonl");
        var settings = new TrainSettings
        {
            BatchSize = 2, GradientAccumulation = 2, Epochs = 4, LearningRate = 1e-2, Seed = 3, LogEvery = 1,
        };
        new Trainer(model, Dataset(6, 0), settings, CPU, new RecordingLog()) { MetricsPath = metrics }
            .Train(CancellationToken.None);

        var epochs = File.ReadLines(metrics).Select(l => JsonNode.Parse(l)!["epoch"]!.GetValue<double>()).ToList();
        Assert.Equal([2 / 3.0, 1, 5 / 3.0, 2], epochs, new ToleranceComparer(1e-3));
    }

    private sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;
        public int GetHashCode(double value) => 0;
    }
}
