using FineTune.Core;
using FineTune.Torch.Training;
using System.Globalization;
using System.Text.Json;
using FineTune.Core.Caching;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Evaluation;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>
/// Scores the trained model on the held-out conversations (mean next-token loss over the tokens that carry a
/// label, its exponential the perplexity, and the share of those tokens predicted exactly), answers a seeded sample
/// of validation prompts and scores the answers against the references (BLEU-4, ROUGE), answers the pipeline's
/// prompts, and, with compare_base, does the same with the model before training. Writes report.json, report.md and
/// the plots of the training curves and token lengths.
/// </summary>
internal sealed class EvaluateStage(Func<string, IChatTokenizer>? loadTokenizer = null) : Stage<EvaluateSettings>
{
    public const string ReportJson = "report.json";
    public const string ReportMarkdown = "report.md";

    // Loss is a sum over tokens, so the batch size changes only speed and memory, not the figure.
    private const int BatchSize = 8;
    private const int GenerationBatchSize = 16;

    private readonly Func<string, IChatTokenizer> _loadTokenizer = loadTokenizer ?? TokenizerFolder.Load;

    public override string Name => "evaluate";
    public override int ImplementationVersion => 4;
    public override IReadOnlyList<string> DependsOn { get; } = ["train", "tokenize"];

    /// <summary>The device the model was trained on, as the train stage's output records it.</summary>
    protected override ComputeEnvironment ResolveEnvironment(StageContext context, EvaluateSettings settings) =>
        ComputeEnvironmentProvider.Resolve(context.InputEntries.TryGetValue("train", out var train)
            && train.Environment.TryGetValue(ComputeEnvironment.DeviceKey, out var device)
                ? ComputeEnvironmentProvider.RecordedDevice(device) : "auto");

    protected override Task RunAsync(StageContext context, EvaluateSettings settings,
        CancellationToken cancellationToken)
    {
        var trainDirectory = context.Input("train");
        var modelDirectory = Path.Combine(trainDirectory, "model");
        var tokenizeDirectory = context.Input("tokenize");
        var device = ComputeEnvironmentProvider.TorchDevice(context.Environment);
        var tokenizer = _loadTokenizer(Path.Combine(tokenizeDirectory, "tokenizer"));

        var validationPath = Path.Combine(tokenizeDirectory, "validation.tokens");
        var validation = File.Exists(validationPath) ? TokenizedDataset.Read(validationPath) : null;
        var sample = validation is null ? [] : SampleExamples(validation, settings.Sample, settings.Seed, tokenizer);

        ValidationScore score;
        List<EvaluationAnswer> answers;
        string[] sampleAnswers;
        using (var model = ModelFolder.Load(modelDirectory, device: device))
        {
            score = validation is null ? ValidationScore.None
                : ValidationLoss(model, validation, settings.MaxExamples, tokenizer.PadTokenId, context.Log,
                    cancellationToken);
            (answers, sampleAnswers) = Answer(model, tokenizer, settings, sample, context.Log, cancellationToken);
        }
        if (score.Loss is null)
            context.Log.Warning("no validation examples with labels: loss and perplexity are not measured");

        BaseAnswers? baseAnswers = null;
        if (settings.CompareBase)
            baseAnswers = BaseModelAnswers(context, settings, tokenizer, sample, modelDirectory, device,
                cancellationToken);

        var plots = ReportPlots.Write(context.OutputDirectory,
            TrainingCurves.Read(Path.Combine(trainDirectory, "metrics.jsonl")),
            LengthsOf(Path.Combine(tokenizeDirectory, "train.tokens")), LengthsOf(validationPath));

        var report = EvaluationReport.Create(score, answers, sample, sampleAnswers, baseAnswers, plots);
        File.WriteAllText(Path.Combine(context.OutputDirectory, ReportJson),
            JsonSerializer.Serialize(report, JsonText.Indented) + "\n");
        File.WriteAllText(Path.Combine(context.OutputDirectory, ReportMarkdown), EvaluationMarkdown.Write(report));

        if (score.Loss is { } loss)
        {
            context.Summary["validation_loss"] = Math.Round(loss, 6);
            context.Summary["perplexity"] = Math.Round(Math.Exp(loss), 4);
            context.Summary["token_accuracy"] = Math.Round(score.Accuracy!.Value, 4);
        }
        if (report.Sample is { } scores)
        {
            context.Summary["bleu4"] = scores.Tuned.Bleu4;
            context.Summary["rouge_l"] = scores.Tuned.RougeL;
        }
        context.Summary["validation_examples"] = score.Examples;
        context.Summary["validation_tokens"] = score.Tokens;
        context.Summary["answers"] = answers.Count;
        return Task.CompletedTask;
    }

    private static int[] LengthsOf(string tokensPath)
    {
        if (!File.Exists(tokensPath)) return [];
        var dataset = TokenizedDataset.Read(tokensPath);
        return [.. Enumerable.Range(0, dataset.Count).Select(dataset.Length)];
    }

    /// <summary>
    /// Mean negative log-likelihood per labelled token of the first <paramref name="maxExamples"/> examples (all
    /// when 0), and the share of those tokens that are the model's most likely next token. Null when no example
    /// carries a label.
    /// </summary>
    public static ValidationScore ValidationLoss(LlamaForCausalLM model, TokenizedDataset dataset,
        int maxExamples, int padTokenId, IStageLog? log = null, CancellationToken cancellationToken = default)
    {
        var count = maxExamples > 0 ? Math.Min(maxExamples, dataset.Count) : dataset.Count;
        // Batching neighbours of similar length wastes less work on padding.
        var order = Enumerable.Range(0, count).OrderBy(dataset.Length).ToArray();
        var device = model.parameters().First().device;
        double totalLoss = 0;
        long totalTokens = 0, correct = 0;

        using var noGrad = no_grad();
        model.eval();
        for (var start = 0; start < order.Length; start += BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = order.AsSpan(start, Math.Min(BatchSize, order.Length - start)).ToArray();
            var width = batch.Max(dataset.Length);
            if (width < 2) continue;
            var ids = new long[batch.Length * width];
            var labels = new long[batch.Length * width];
            var mask = new long[batch.Length * width];
            Array.Fill(ids, padTokenId);
            Array.Fill(labels, TokenizedDataset.IgnoreLabel);
            for (var row = 0; row < batch.Length; row++)
            {
                var exampleIds = dataset.Ids(batch[row]);
                var exampleLabels = dataset.Labels(batch[row]);
                for (var i = 0; i < exampleIds.Length; i++)
                {
                    ids[row * width + i] = exampleIds[i];
                    labels[row * width + i] = exampleLabels[i];
                    mask[row * width + i] = 1;
                }
            }

            using var scope = NewDisposeScope();
            long[] shape = [batch.Length, width];
            var hidden = model.Hidden(tensor(ids, shape, device: device), tensor(mask, shape, device: device));
            // Position t predicts token t+1; only positions whose next token is labelled need the (large) head.
            var targets = tensor(labels, shape, device: device)[.., 1..];
            var scored = targets.ne(TokenizedDataset.IgnoreLabel);
            var labelled = scored.sum().item<long>();
            if (labelled > 0)
            {
                var logits = model.Logits(hidden[.., ..^1][scored]).to(ScalarType.Float32);
                var expected = targets[scored];
                totalLoss += nn.functional.cross_entropy(logits, expected,
                    reduction: nn.Reduction.Sum).item<float>();
                correct += logits.argmax(-1).eq(expected).sum().item<long>();
                totalTokens += labelled;
            }
            log?.Progress(new StageProgress(start + batch.Length, order.Length, "example",
                totalTokens > 0 ? $"loss {(totalLoss / totalTokens).ToString("0.0000", CultureInfo.InvariantCulture)}"
                    : null));
        }
        return totalTokens > 0
            ? new ValidationScore(totalLoss / totalTokens, (double)correct / totalTokens, count, totalTokens)
            : new ValidationScore(null, null, count, totalTokens);
    }

    /// <summary>
    /// Up to <paramref name="count"/> validation examples drawn with <paramref name="seed"/> (SplitMix64 shuffle),
    /// in dataset order. The prompt is every token before the first trained one, the reference the first run of
    /// trained tokens (the first answer of a conversation); examples trained from their first token have no prompt
    /// and are left out.
    /// </summary>
    public static List<SampleExample> SampleExamples(TokenizedDataset dataset, int count, int seed,
        IChatTokenizer tokenizer)
    {
        var candidates = Enumerable.Range(0, dataset.Count).Where(i => FirstLabelled(dataset.Labels(i)) > 0).ToList();
        new SplitMix64(unchecked((ulong)seed)).Shuffle(candidates);
        var chosen = candidates.Take(count).Order().ToList();
        var sample = new List<SampleExample>();
        foreach (var index in chosen)
        {
            var ids = dataset.Ids(index);
            var labels = dataset.Labels(index);
            var first = FirstLabelled(labels);
            var end = first;
            while (end < labels.Length && labels[end] != TokenizedDataset.IgnoreLabel) end++;
            var promptIds = ids[..first].ToArray();
            var referenceIds = ids[first..end].ToArray().Where(id => !tokenizer.StopTokenIds.Contains(id)).ToArray();
            sample.Add(new SampleExample(index, promptIds, tokenizer.Decode(promptIds).Trim(),
                tokenizer.Decode(referenceIds).Trim()));
        }
        return sample;
    }

    private static int FirstLabelled(ReadOnlySpan<int> labels)
    {
        for (var i = 0; i < labels.Length; i++)
            if (labels[i] != TokenizedDataset.IgnoreLabel) return i;
        return -1;
    }

    /// <summary>The pipeline's prompts (with the stage's sampling settings) and the sample (greedy, batched).</summary>
    private static (List<EvaluationAnswer> Prompts, string[] Sample) Answer(LlamaForCausalLM model,
        IChatTokenizer tokenizer, EvaluateSettings settings, IReadOnlyList<SampleExample> sample, IStageLog log,
        CancellationToken cancellationToken)
    {
        var generator = new TextGenerator(model, tokenizer);
        var options = new GenerationOptions(MaxNewTokens: settings.MaxNewTokens, Temperature: settings.Temperature,
            TopP: settings.TopP, Seed: settings.Seed, RepetitionPenalty: settings.RepetitionPenalty);
        var answers = new List<EvaluationAnswer>();
        foreach (var prompt in settings.Prompts)
        {
            var promptIds = tokenizer.EncodeConversation([new ChatMessage("user", prompt)], addGenerationPrompt: true);
            var result = generator.Generate(promptIds, options, cancellationToken: cancellationToken);
            answers.Add(new EvaluationAnswer(prompt, result.Text, result.TokenIds.Count, result.FinishReason));
            log.Progress(new StageProgress(answers.Count, settings.Prompts.Count, "prompt"));
        }
        var sampleIds = BatchedGenerator.GenerateGreedy(model, [.. sample.Select(s => (IReadOnlyList<int>)s.PromptIds)],
            settings.MaxNewTokens, tokenizer.StopTokenIds, tokenizer.PadTokenId, GenerationBatchSize,
            settings.RepetitionPenalty, done => log.Progress(new StageProgress(done, sample.Count, "sample answer")),
            cancellationToken);
        return (answers, [.. sampleIds.Select(ids => (ids.Count >= settings.MaxNewTokens
            ? IncrementalText.WithoutIncompleteTail(tokenizer.Decode(ids)) : tokenizer.Decode(ids)).Trim())]);
    }

    /// <summary>
    /// The same prompts answered by the model before training. The built-in model's base is its seeded initial
    /// weights (cheap: made again each time). A pretrained base's answers are kept in the store under a hash of the
    /// base's content (its Hub commit, or its files' hashes) and of the prompts and generation settings, so they are
    /// computed once.
    /// </summary>
    private static BaseAnswers BaseModelAnswers(StageContext context, EvaluateSettings settings,
        IChatTokenizer tokenizer, IReadOnlyList<SampleExample> sample, string tunedModelDirectory, Device device,
        CancellationToken cancellationToken)
    {
        var train = context.Pipeline.Stages.Train;
        if (train.IsBuiltin)
        {
            using var initial = new LlamaForCausalLM(ModelFolder.ReadConfig(tunedModelDirectory));
            initial.InitializeWeights(train.Seed);
            initial.to(device);
            var (prompts, answers) = Answer(initial, tokenizer, settings, sample, context.Log, cancellationToken);
            return new BaseAnswers($"{train.Model}: the initial weights (seed {train.Seed})",
                [.. prompts.Select(p => p.Answer)], answers);
        }

        var location = ModelSetting.Resolve(context, train.Model, "stages.train.model", DiagnosticCodes.ModelNotFound,
            "use builtin:tiny, a Hugging Face layout folder, or a model id such as Qwen/Qwen2.5-0.5B-Instruct");
        var content = location.HubCommit is { } commit ? $"hub:{commit}"
            : string.Join(",", new[] { Path.Combine(location.Folder, ModelFolder.ConfigFile) }
                .Concat(ModelFolder.WeightFiles(location.Folder)).Select(ModelLocation.Hashes.HashOf));
        var question = JsonSerializer.Serialize(new
        {
            content, prompts = settings.Prompts.Select(p => tokenizer.EncodeConversation([new("user", p)], true)),
            sample = sample.Select(s => s.PromptIds), settings.MaxNewTokens, settings.Temperature, settings.TopP,
            settings.Seed, settings.RepetitionPenalty,
        });
        var cachePath = Path.Combine(context.Pipeline.StorePath, "base-answers",
            ContentHash.OfText(question) + ".json");
        if (File.Exists(cachePath)
            && JsonSerializer.Deserialize<BaseAnswers>(File.ReadAllText(cachePath)) is { } cached)
        {
            context.Log.Info($"base answers of {train.Model} from {cachePath}");
            return cached;
        }
        using var model = ModelFolder.Load(location.Folder, device: device);
        var (baseAnswers, baseSample) = Answer(model, tokenizer, settings, sample, context.Log, cancellationToken);
        var result = new BaseAnswers(train.Model, [.. baseAnswers.Select(a => a.Answer)], baseSample);
        Directory.CreateDirectory(Path.GetDirectoryName(cachePath)!);
        var partial = cachePath + ".partial";
        File.WriteAllText(partial, JsonSerializer.Serialize(result, JsonText.Indented));
        File.Move(partial, cachePath, overwrite: true);
        return result;
    }
}
