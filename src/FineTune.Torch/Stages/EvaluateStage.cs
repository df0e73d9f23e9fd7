using FineTune.Core;
using FineTune.Torch.Training;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Stages;

/// <summary>One prompt of the report and the model's greedy answer.</summary>
internal sealed record EvaluationAnswer(
    [property: JsonPropertyName("prompt")] string Prompt,
    [property: JsonPropertyName("answer")] string Answer,
    [property: JsonPropertyName("tokens")] int Tokens,
    [property: JsonPropertyName("finish_reason")] string FinishReason);

/// <summary>report.json. Loss and perplexity are null when there is no validation set.</summary>
internal sealed record EvaluationReport(
    [property: JsonPropertyName("loss")] double? Loss,
    [property: JsonPropertyName("perplexity")] double? Perplexity,
    [property: JsonPropertyName("examples")] int Examples,
    [property: JsonPropertyName("tokens")] long Tokens,
    [property: JsonPropertyName("answers")] IReadOnlyList<EvaluationAnswer> Answers);

/// <summary>
/// Scores the trained model on the held-out conversations (mean next-token loss over the tokens that carry a
/// label, and its exponential, the perplexity) and writes greedy answers to the pipeline's prompts, so a run
/// shows both a number to compare and text a person can judge.
/// </summary>
internal sealed class EvaluateStage(Func<string, IChatTokenizer>? loadTokenizer = null) : Stage<EvaluateSettings>
{
    public const string ReportJson = "report.json";
    public const string ReportMarkdown = "report.md";

    // Loss is a sum over tokens, so the batch size changes only speed and memory, not the figure.
    private const int BatchSize = 8;

    private readonly Func<string, IChatTokenizer> _loadTokenizer = loadTokenizer ?? TokenizerFolder.Load;

    public override string Name => "evaluate";
    public override int ImplementationVersion => 1;
    public override IReadOnlyList<string> DependsOn { get; } = ["train", "tokenize"];

    /// <summary>The device the model was trained on, as the train stage's output records it.</summary>
    protected override ComputeEnvironment ResolveEnvironment(StageContext context, EvaluateSettings settings) =>
        ComputeEnvironmentProvider.Resolve(context.InputEntries.TryGetValue("train", out var train)
            && train.Environment.TryGetValue(ComputeEnvironment.DeviceKey, out var device) ? device : "auto");

    protected override Task RunAsync(StageContext context, EvaluateSettings settings,
        CancellationToken cancellationToken)
    {
        var modelDirectory = Path.Combine(context.Input("train"), "model");
        var tokenizeDirectory = context.Input("tokenize");
        var device = ComputeEnvironmentProvider.TorchDevice(context.Environment);

        using var model = ModelFolder.Load(modelDirectory, device: device);
        var tokenizer = _loadTokenizer(Path.Combine(tokenizeDirectory, "tokenizer"));

        var validationPath = Path.Combine(tokenizeDirectory, "validation.tokens");
        var (loss, examples, tokens) = File.Exists(validationPath)
            ? ValidationLoss(model, TokenizedDataset.Read(validationPath), settings.MaxExamples, tokenizer.PadTokenId,
                context.Log, cancellationToken)
            : (null, 0, 0);
        if (loss is null)
            context.Log.Warning("no validation examples with labels: loss and perplexity are not measured");
        double? perplexity = loss is { } l ? Math.Exp(l) : null;

        var answers = AnswerPrompts(model, tokenizer, settings, context.Log, cancellationToken);

        var report = new EvaluationReport(loss, perplexity, examples, tokens, answers);
        File.WriteAllText(Path.Combine(context.OutputDirectory, ReportJson),
            JsonSerializer.Serialize(report, JsonText.Indented) + "\n");
        File.WriteAllText(Path.Combine(context.OutputDirectory, ReportMarkdown), Markdown(report));

        if (loss is not null)
        {
            context.Summary["validation_loss"] = Math.Round(loss.Value, 6);
            context.Summary["perplexity"] = Math.Round(perplexity!.Value, 4);
        }
        context.Summary["validation_examples"] = examples;
        context.Summary["validation_tokens"] = tokens;
        context.Summary["answers"] = answers.Count;
        return Task.CompletedTask;
    }

    /// <summary>
    /// Mean negative log-likelihood per labelled token of the first <paramref name="maxExamples"/> examples (all
    /// when 0). Null when no example carries a label.
    /// </summary>
    public static (double? Loss, int Examples, long Tokens) ValidationLoss(LlamaForCausalLM model,
        TokenizedDataset dataset,
        int maxExamples, int padTokenId, IStageLog? log = null, CancellationToken cancellationToken = default)
    {
        var count = maxExamples > 0 ? Math.Min(maxExamples, dataset.Count) : dataset.Count;
        // Batching neighbours of similar length wastes less work on padding.
        var order = Enumerable.Range(0, count).OrderBy(dataset.Length).ToArray();
        var device = model.parameters().First().device;
        double totalLoss = 0;
        long totalTokens = 0;

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
                totalLoss += nn.functional.cross_entropy(logits, targets[scored],
                    reduction: nn.Reduction.Sum).item<float>();
                totalTokens += labelled;
            }
            log?.Progress(new StageProgress(start + batch.Length, order.Length, "example",
                totalTokens > 0 ? $"loss {(totalLoss / totalTokens).ToString("0.0000", CultureInfo.InvariantCulture)}"
                    : null));
        }
        return (totalTokens > 0 ? totalLoss / totalTokens : null, count, totalTokens);
    }

    private static List<EvaluationAnswer> AnswerPrompts(LlamaForCausalLM model, IChatTokenizer tokenizer,
        EvaluateSettings settings,
        IStageLog log, CancellationToken cancellationToken)
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
        return answers;
    }

    public static string Markdown(EvaluationReport report)
    {
        string Figure(double? value, string format) => value is { } v
            ? v.ToString(format, CultureInfo.InvariantCulture) : "n/a";
        var md = new StringBuilder();
        md.Append("# Evaluation\n\n");
        md.Append("| metric | value |\n|---|---|\n");
        md.Append($"| validation loss | {Figure(report.Loss, "0.0000")} |\n");
        md.Append($"| perplexity | {Figure(report.Perplexity, "0.00")} |\n");
        md.Append($"| examples | {report.Examples} |\n");
        md.Append($"| labelled tokens | {report.Tokens} |\n");
        if (report.Answers.Count > 0)
        {
            md.Append("\n## Answers\n");
            foreach (var answer in report.Answers)
            {
                md.Append($"\n### {answer.Prompt.ReplaceLineEndings(" ")}\n\n");
                md.Append($"_{answer.Tokens} tokens, finished by {answer.FinishReason}_\n\n");
                // A fence longer than any backtick run in the answer keeps model output from breaking the page.
                var fence = new string('`', Math.Max(3, LongestRun(answer.Answer, '`') + 1));
                md.Append($"{fence}text\n{answer.Answer}\n{fence}\n");
            }
        }
        return md.ToString();
    }

    private static int LongestRun(string text, char c)
    {
        int longest = 0, run = 0;
        foreach (var ch in text) longest = Math.Max(longest, run = ch == c ? run + 1 : 0);
        return longest;
    }
}
