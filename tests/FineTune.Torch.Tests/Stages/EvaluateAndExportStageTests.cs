using FineTune.TestKit;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.Torch.Formats;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Tests.Fakes;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Stages;

public sealed class EvaluateAndExportStageTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("ft-stages-").FullName;
    private readonly ByteChatTokenizer _tokenizer = new();
    private readonly string _trainDir;
    private readonly string _tokenizeDir;

    public EvaluateAndExportStageTests()
    {
        _trainDir = Directory.CreateDirectory(Path.Combine(_root, "train")).FullName;
        _tokenizeDir = Directory.CreateDirectory(Path.Combine(_root, "tokenize")).FullName;
        using (var model = TinyModels.Create(tied: true)) ModelFolder.Save(model, Path.Combine(_trainDir, "model"));
        ByteChatTokenizer.WriteFolder(Path.Combine(_tokenizeDir, "tokenizer"));
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private Dictionary<string, string> Inputs => new() { ["train"] = _trainDir, ["tokenize"] = _tokenizeDir };

    private static readonly string[][] Conversations =
    [
        ["What is 2+2?", "4."],
        ["Say hi in French", "Bonjour !"],
        ["Name a colour", "Blue, like the sky"],
    ];

    private TokenizedDataset WriteValidation()
    {
        var builder = new TokenizedDataset.Builder();
        foreach (var pair in Conversations)
        {
            var prompt = _tokenizer.EncodeConversation([new("user", pair[0])], addGenerationPrompt: true);
            var answer = _tokenizer.Encode(pair[1]).Append(ByteChatTokenizer.End).ToArray();
            int[] ids = [.. prompt, .. answer];
            int[] labels = [.. prompt.Select(_ => TokenizedDataset.IgnoreLabel), .. answer];
            builder.Add(ids, labels);
        }
        builder.Write(Path.Combine(_tokenizeDir, "validation.tokens"));
        return builder.Build();
    }

    /// <summary>Loss the slow way: each example alone, full logits, mean over all labelled tokens of all examples.</summary>
    private static double ReferenceLoss(LlamaForCausalLM model, TokenizedDataset dataset, int count) =>
        Reference(model, dataset, count).Loss;

    /// <summary>Loss and accuracy the slow way (accuracy: labelled tokens that are the argmax of their position).</summary>
    private static (double Loss, double Accuracy) Reference(LlamaForCausalLM model, TokenizedDataset dataset, int count)
    {
        double sum = 0;
        long tokens = 0, correct = 0;
        for (var i = 0; i < count; i++)
        {
            var ids = dataset.Ids(i).ToArray().Select(x => (long)x).ToArray();
            var labels = dataset.Labels(i).ToArray();
            var logits = TinyModels.LogitsOf(model, ids);
            var logProbabilities = nn.functional.log_softmax(logits, 1);
            for (var t = 0; t + 1 < ids.Length; t++)
            {
                if (labels[t + 1] == TokenizedDataset.IgnoreLabel) continue;
                sum -= logProbabilities[t, labels[t + 1]].item<float>();
                if (logits[t].argmax().item<long>() == labels[t + 1]) correct++;
                tokens++;
            }
        }
        return (sum / tokens, (double)correct / tokens);
    }

    [Fact]
    public async Task Evaluate_reports_validation_loss_and_greedy_answers()
    {
        var dataset = WriteValidation();
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Evaluate.Prompts = ["What is 2+2?", "Name a colour"];
        pipeline.Stages.Evaluate.MaxNewTokens = 6;
        pipeline.Stages.Evaluate.MaxExamples = 2;
        pipeline.Stages.Evaluate.CompareBase = false;
        var log = new RecordingLog();
        var context = Contexts.For("evaluate", pipeline, _root, Inputs, log);

        await new EvaluateStage(_ => _tokenizer).RunAsync(context, CancellationToken.None);

        using var model = ModelFolder.Load(Path.Combine(_trainDir, "model"));
        var (expectedLoss, expectedAccuracy) = Reference(model, dataset, 2);
        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(context.OutputDirectory, "report.json")))!;
        Assert.Equal(expectedLoss, report["loss"]!.GetValue<double>(), 4);
        Assert.Equal(Math.Exp(expectedLoss), report["perplexity"]!.GetValue<double>(), 3);
        Assert.Equal(expectedAccuracy, report["token_accuracy"]!.GetValue<double>(), 12);
        Assert.Equal(2, report["examples"]!.GetValue<int>());
        Assert.Equal(dataset.Labels(0).ToArray().Count(l => l >= 0) + dataset.Labels(1).ToArray().Count(l => l >= 0), report["tokens"]!.GetValue<long>());

        var answers = report["answers"]!.AsArray();
        Assert.Equal(2, answers.Count);
        var expectedIds = TextGenerator.GenerateIds(model, _tokenizer.EncodeConversation([new("user", "Name a colour")], true),
            new GenerationOptions(MaxNewTokens: 6, StopTokenIds: _tokenizer.StopTokenIds));
        Assert.Equal("Name a colour", answers[1]!["prompt"]!.GetValue<string>());
        Assert.Equal(expectedIds.Count, answers[1]!["tokens"]!.GetValue<int>());
        Assert.Equal(AnswerText(expectedIds, maxNewTokens: 6), answers[1]!["answer"]!.GetValue<string>());

        var markdown = File.ReadAllText(Path.Combine(context.OutputDirectory, "report.md"));
        Assert.Contains("| validation loss | " + expectedLoss.ToString("0.0000", System.Globalization.CultureInfo.InvariantCulture), markdown);
        Assert.Contains($"| Name a colour | {AnswerText(expectedIds, maxNewTokens: 6).Trim()} |", markdown);
        Assert.Null(report["base"]);

        Assert.Equal(Math.Round(report["loss"]!.GetValue<double>(), 6), context.Summary["validation_loss"]);
        Assert.Equal(2, context.Summary["answers"]);
        Assert.Contains(log.Progresses, p => p.Unit == "example" && p.Done == 2 && p.Total == 2);
    }

    [Fact]
    public async Task Evaluate_scores_a_seeded_sample_against_references_beside_the_base_model()
    {
        var dataset = WriteValidation();
        File.WriteAllLines(Path.Combine(_trainDir, "metrics.jsonl"),
        [
            """{"step": 1, "epoch": 0.5, "loss": 5.5, "lr": 0.001}""",
            """{"step": 2, "epoch": 1.0, "loss": 5.1, "lr": 0.0005}""",
        ]);
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Evaluate.Prompts = ["Name a colour"];
        pipeline.Stages.Evaluate.MaxNewTokens = 5;
        pipeline.Stages.Evaluate.Sample = 2;
        var context = Contexts.For("evaluate", pipeline, _root, Inputs, new RecordingLog());

        await new EvaluateStage(_ => _tokenizer).RunAsync(context, CancellationToken.None);

        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(context.OutputDirectory, "report.json")))!;
        using var tuned = ModelFolder.Load(Path.Combine(_trainDir, "model"));
        // The built-in model's base: its configuration with the seeded initial weights (train.seed 42).
        using var initial = new LlamaForCausalLM(ModelFolder.ReadConfig(Path.Combine(_trainDir, "model")));
        initial.InitializeWeights(42);
        string Greedy(LlamaForCausalLM model, IReadOnlyList<int> prompt) => AnswerText(TextGenerator.GenerateIds(
            model, prompt, new GenerationOptions(MaxNewTokens: 5, StopTokenIds: _tokenizer.StopTokenIds)), 5).Trim();

        var colourPrompt = _tokenizer.EncodeConversation([new("user", "Name a colour")], true);
        Assert.Equal("builtin:tiny: the initial weights (seed 42)", report["base"]!.GetValue<string>());
        Assert.Equal(Greedy(initial, colourPrompt), report["answers"]![0]!["base_answer"]!.GetValue<string>());

        var samples = report["sample_answers"]!.AsArray();
        Assert.Equal(2, samples.Count);
        var chosen = EvaluateStage.SampleExamples(dataset, 2, 42, _tokenizer);
        Assert.Equal(chosen.Select(c => c.Index), samples.Select(s => s!["example"]!.GetValue<int>()));
        double bleuSum = 0;
        foreach (var sample in samples)
        {
            var index = sample!["example"]!.GetValue<int>();
            Assert.Equal(Conversations[index][1], sample["reference"]!.GetValue<string>());
            var prompt = _tokenizer.EncodeConversation([new("user", Conversations[index][0])], true);
            var answer = Greedy(tuned, prompt);
            Assert.Equal(answer, sample["answer"]!.GetValue<string>());
            Assert.Equal(Greedy(initial, prompt), sample["base_answer"]!.GetValue<string>());
            var scores = FineTune.Torch.Evaluation.TextMetrics.Score(answer, Conversations[index][1]);
            Assert.Equal(scores.RougeL, sample["scores"]!["rougeL"]!.GetValue<double>(), 12);
            bleuSum += scores.Bleu4;
        }
        Assert.Equal(Math.Round(bleuSum / 2 * 100, 2), report["sample"]!["tuned"]!["bleu4"]!.GetValue<double>(), 12);
        Assert.NotNull(report["sample"]!["base"]);

        Assert.Equal(["loss.png", "learning_rate.png", "token_lengths.png"],
            report["plots"]!.AsArray().Select(p => p!.GetValue<string>()));
        foreach (var plot in report["plots"]!.AsArray())
            Assert.True(File.Exists(Path.Combine(context.OutputDirectory, plot!.GetValue<string>())));
        var markdown = File.ReadAllText(Path.Combine(context.OutputDirectory, "report.md"));
        Assert.Contains("![loss](loss.png)", markdown);
        Assert.Contains("| prompt | base | tuned |", markdown);
        Assert.Contains("| BLEU-4 | ", markdown);
    }

    [Fact]
    public async Task A_pretrained_base_answers_once_then_comes_from_the_store()
    {
        WriteValidation();
        using (var pretrained = TinyModels.Create(tied: true, seed: 5))
            ModelFolder.Save(pretrained, Path.Combine(_root, "base"));
        var pipeline = new PipelineDefinition { Name = "test", FilePath = Path.Combine(_root, "test.yaml") };
        pipeline.Stages.Train.Model = "base";
        pipeline.Stages.Evaluate.Prompts = ["Name a colour"];
        pipeline.Stages.Evaluate.MaxNewTokens = 5;
        pipeline.Stages.Evaluate.Sample = 1;

        var first = Contexts.For("evaluate", pipeline, _root, Inputs, new RecordingLog());
        await new EvaluateStage(_ => _tokenizer).RunAsync(first, CancellationToken.None);

        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(first.OutputDirectory, "report.json")))!;
        using var baseModel = ModelFolder.Load(Path.Combine(_root, "base"));
        var expected = _tokenizer.Decode(TextGenerator.GenerateIds(baseModel,
            _tokenizer.EncodeConversation([new("user", "Name a colour")], true),
            new GenerationOptions(MaxNewTokens: 5, StopTokenIds: _tokenizer.StopTokenIds)));
        Assert.Equal("base", report["base"]!.GetValue<string>());
        Assert.Equal(expected, report["answers"]![0]!["base_answer"]!.GetValue<string>());
        var cached = Assert.Single(Directory.GetFiles(Path.Combine(_root, ".finetune", "base-answers")));

        // The second evaluation reads the stored answers instead of running the base model: an edited file shows.
        var stored = JsonNode.Parse(File.ReadAllText(cached))!;
        Assert.Equal(expected, stored["prompts"]![0]!.GetValue<string>());
        stored["prompts"]![0] = "stored";
        File.WriteAllText(cached, stored.ToJsonString());
        var log = new RecordingLog();
        var second = Contexts.For("evaluate", pipeline, _root, Inputs, log);
        await new EvaluateStage(_ => _tokenizer).RunAsync(second, CancellationToken.None);
        report = JsonNode.Parse(File.ReadAllText(Path.Combine(second.OutputDirectory, "report.json")))!;
        Assert.Equal("stored", report["answers"]![0]!["base_answer"]!.GetValue<string>());
        Assert.Contains(log.Lines, l => l.Contains("base answers of base from"));
    }

    [Fact]
    public async Task Evaluate_without_validation_examples_reports_no_loss()
    {
        new TokenizedDataset.Builder().Write(Path.Combine(_tokenizeDir, "validation.tokens"));
        var log = new RecordingLog();
        var context = Contexts.For("evaluate", new PipelineDefinition { Name = "test" }, _root, Inputs, log);

        await new EvaluateStage(_ => _tokenizer).RunAsync(context, CancellationToken.None);

        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(context.OutputDirectory, "report.json")))!;
        Assert.Null(report["loss"]);
        Assert.False(context.Summary.ContainsKey("validation_loss"));
        Assert.Contains(log.Lines, l => l.StartsWith("warning:"));
        Assert.Contains("| validation loss | n/a |", File.ReadAllText(Path.Combine(context.OutputDirectory, "report.md")));
    }

    [Fact]
    public async Task Export_writes_a_complete_hugging_face_folder()
    {
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Export.Dtype = "bfloat16";
        pipeline.Stages.Export.MaxNewTokens = 99;
        var context = Contexts.For("export", pipeline, _root, Inputs, new RecordingLog());
        var tokenizer = new ByteChatTokenizer { StopTokenIds = [ByteChatTokenizer.End, ByteChatTokenizer.User] };

        await new ExportStage(_ => tokenizer).RunAsync(context, CancellationToken.None);

        var output = context.OutputDirectory;
        Assert.Equal(
            ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"],
            Directory.GetFiles(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(File.ReadAllText(Path.Combine(_tokenizeDir, "tokenizer", "tokenizer.json")), File.ReadAllText(Path.Combine(output, "tokenizer.json")));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!;
        Assert.Equal("llama", config["model_type"]!.GetValue<string>());
        Assert.Equal("LlamaForCausalLM", config["architectures"]![0]!.GetValue<string>());
        Assert.Equal("bfloat16", config["torch_dtype"]!.GetValue<string>());
        Assert.Equal(ByteChatTokenizer.End, config["eos_token_id"]!.GetValue<int>());
        Assert.Equal(ByteChatTokenizer.Pad, config["pad_token_id"]!.GetValue<int>());
        Assert.True(config["tie_word_embeddings"]!.GetValue<bool>());

        var header = Safetensors.ReadHeader(Path.Combine(output, "model.safetensors"));
        Assert.Equal("pt", header.Metadata["format"]);
        Assert.All(header.Tensors, t => Assert.Equal("BF16", t.Dtype));
        Assert.Null(header["lm_head.weight"]);
        Assert.Equal(new long[] { 260, 32 }, header["model.embed_tokens.weight"]!.Shape);

        var generation = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "generation_config.json")))!;
        Assert.Equal([ByteChatTokenizer.End, ByteChatTokenizer.User], generation["eos_token_id"]!.AsArray().Select(n => n!.GetValue<int>()));
        Assert.False(generation["do_sample"]!.GetValue<bool>());
        Assert.Equal(99, generation["max_new_tokens"]!.GetValue<int>());

        using var model = ModelFolder.Load(output);
        var parameters = model.parameters().Sum(p => p.numel());
        Assert.Equal(parameters, context.Summary["parameters"]);
        Assert.Equal(6, context.Summary["files"]);
        Assert.Equal(Directory.GetFiles(output).Sum(f => new FileInfo(f).Length), context.Summary["bytes"]);
    }

    [Fact]
    public async Task Export_names_the_missing_tokenizer_file()
    {
        File.Delete(Path.Combine(_tokenizeDir, "tokenizer", "special_tokens_map.json"));
        var context = Contexts.For("export", new PipelineDefinition { Name = "test" }, _root, Inputs, new RecordingLog());
        var error = await Assert.ThrowsAsync<FineTune.Core.Diagnostics.FineTuneException>(
            () => new ExportStage(_ => _tokenizer).RunAsync(context, CancellationToken.None));
        Assert.Equal("FT0610", error.Diagnostics[0].Code);
        Assert.Contains("special_tokens_map.json", error.Message);
    }

    /// <summary>The decoded answer; one cut off by max_new_tokens loses its final U+FFFD, which UTF-8 decoding gives
    /// for a character whose last bytes were never generated.</summary>
    private string AnswerText(IReadOnlyList<int> ids, int maxNewTokens)
    {
        var text = _tokenizer.Decode(ids);
        return ids.Count == maxNewTokens && !_tokenizer.StopTokenIds.Contains(ids[^1]) && text.EndsWith('\uFFFD')
            ? text[..^1] : text;
    }
}
