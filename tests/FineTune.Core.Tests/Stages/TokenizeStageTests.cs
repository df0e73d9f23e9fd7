using FineTune.Core.Tests.Tokenization;
using System.Text.Json;
using FineTune.Core.Caching;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.TestKit;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.Stages;

public sealed class TokenizeStageTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("ft-tokenize-").FullName;
    private readonly RecordingLog _log = new();

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static readonly string LongText = string.Concat(Enumerable.Repeat("word ", 100)).TrimEnd();

    private static readonly Conversation Short = new([new("user", "Hi"), new("assistant", "Hello")], 0);
    private static readonly Conversation LongPrompt = new([new("user", LongText), new("assistant", "ok")], 1);
    private static readonly Conversation LongAnswer = new([new("user", "Hi"), new("assistant", LongText)], 2);

    private StageContext Context(TokenizeSettings settings, params Conversation[] train)
    {
        var format = Path.Combine(_root, "format");
        Directory.CreateDirectory(format);
        ConversationFile.Write(Path.Combine(format, "train.jsonl"), train);
        ConversationFile.Write(Path.Combine(format, "validation.jsonl"), [Short]);
        var output = Path.Combine(_root, "out");
        Directory.CreateDirectory(output);
        var pipeline = new PipelineDefinition { Name = "t", FilePath = Path.Combine(_root, "pipeline.yaml") };
        pipeline.Stages.Tokenize = settings;
        return new StageContext
        {
            Pipeline = pipeline, Settings = settings, PipelineDirectory = _root, OutputDirectory = output, WorkDirectory = Path.Combine(_root, "work"),
            InputDirectories = new Dictionary<string, string> { ["format"] = format }, Log = _log,
            Environment = ComputeEnvironment.None, Name = "tokenize",
        };
    }

    [Fact]
    public async Task Truncates_to_the_first_max_length_tokens_and_drops_examples_left_without_trained_tokens()
    {
        const int maxLength = 32;
        var context = Context(new TokenizeSettings { MaxLength = maxLength }, Short, LongPrompt, LongAnswer);
        await new TokenizeStage().RunAsync(context, CancellationToken.None);

        var gpt2 = TokenizerAssets.Gpt2;
        int Count(string text) => gpt2.Encode(text).Count;
        var shortLength = Count(ChatMLReference.Render(Short.Messages, false));
        var answerHeader = Count(ChatMLReference.Render([LongAnswer.Messages[0]], addGenerationPrompt: true));
        Assert.True(shortLength < maxLength && Count(ChatMLReference.Render([LongPrompt.Messages[0]], true)) > maxLength);

        var train = TokenizedDataset.Read(Path.Combine(context.OutputDirectory, "train.tokens"));
        Assert.Equal(2, train.Count); // LongPrompt is dropped: its answer starts after max_length
        Assert.Equal(shortLength, train.Length(0));
        Assert.Equal(maxLength, train.Length(1));
        Assert.Equal(gpt2.Encode(ChatMLReference.Render(LongAnswer.Messages, false)).Take(maxLength), train.Ids(1).ToArray());
        var shortTrained = Count("Hello") + 1; // the answer and its <|im_end|>
        var longKept = maxLength - answerHeader;
        Assert.Equal(shortTrained, Trained(train, 0));
        Assert.Equal(longKept, Trained(train, 1));

        Assert.Equal(2, context.Summary["examples"]);
        Assert.Equal(2, context.Summary["truncated"]);
        Assert.Equal(1, context.Summary["dropped"]);
        Assert.Equal((long)(shortLength + maxLength), context.Summary["tokens"]);
        Assert.Equal((long)(shortTrained + longKept), context.Summary["trained_tokens"]);
        Assert.Equal(maxLength, context.Summary["length_max"]);
        Assert.Equal(1, context.Summary["validation_examples"]);
        Assert.Contains(_log.Warnings, w => w.Contains("dropped 1 of 3"));
        Assert.Equal(3, _log.Progresses.Where(p => p.Detail == "train").Max(p => p.Done));

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(context.OutputDirectory, "summary.json")));
        var trainSummary = summary.RootElement.GetProperty("train");
        var trainedInFull = shortTrained + (Count("ok") + 1) + (Count(LongText) + 1);
        Assert.Equal(1 - (double)(shortTrained + longKept) / trainedInFull, trainSummary.GetProperty("trained_tokens_lost_share").GetDouble(), 5);
        Assert.Equal(2, trainSummary.GetProperty("length_histogram").EnumerateArray().Sum(b => b.GetProperty("examples").GetInt32()));

        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json" })
            Assert.True(File.Exists(Path.Combine(context.OutputDirectory, "tokenizer", file)), file);
        Assert.Equal(1, TokenizedDataset.Read(Path.Combine(context.OutputDirectory, "validation.tokens")).Count);
    }

    [Fact]
    public async Task Train_on_all_keeps_every_token_trained()
    {
        var context = Context(new TokenizeSettings { MaxLength = 32, TrainOn = "all" }, Short, LongPrompt);
        await new TokenizeStage().RunAsync(context, CancellationToken.None);
        var train = TokenizedDataset.Read(Path.Combine(context.OutputDirectory, "train.tokens"));
        Assert.Equal(2, train.Count);
        Assert.Equal(train.Length(0) + train.Length(1), Trained(train, 0) + Trained(train, 1));
        Assert.Equal(0, context.Summary["dropped"]);
    }

    [Fact]
    public async Task Fails_when_no_training_example_is_left()
    {
        var context = Context(new TokenizeSettings { MaxLength = 8 }, LongPrompt);
        var error = await Assert.ThrowsAsync<FineTuneException>(() => new TokenizeStage().RunAsync(context, CancellationToken.None));
        Assert.Equal("FT0404", error.Diagnostics[0].Code);
    }

    [Fact]
    public void External_inputs_identify_the_tokenizer_by_content()
    {
        var gpt2 = new TokenizeStage().ReadInputs(Context(new TokenizeSettings()));
        Assert.Equal(ContentHash.OfText(ChatTokenizer.Gpt2Identity), Assert.Single(gpt2).Sha256);

        var folder = Path.Combine(_root, "qwen3");
        Directory.CreateDirectory(folder);
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(TokenizerAssets.Qwen3Folder, file), Path.Combine(folder, file));
        var inputs = new TokenizeStage().ReadInputs(Context(new TokenizeSettings { Tokenizer = "qwen3" }));
        Assert.Equal([ContentHash.OfFile(Path.Combine(folder, "tokenizer.json")), ContentHash.OfFile(Path.Combine(folder, "tokenizer_config.json"))],
            inputs.Select(i => i.Sha256));
    }

    [Fact]
    public void Missing_tokenizer_folder_is_reported_at_the_setting()
    {
        var context = Context(new TokenizeSettings { Tokenizer = "no-such-folder" });
        var error = Assert.Throws<FineTuneException>(() => new TokenizeStage().ReadInputs(context));
        Assert.Equal("FT0401", error.Diagnostics[0].Code);
        Assert.Equal(context.Pipeline.FilePath, error.Diagnostics[0].File);
    }

    private static int Trained(TokenizedDataset data, int example)
    {
        var count = 0;
        foreach (var label in data.Labels(example)) if (label != TokenizedDataset.IgnoreLabel) count++;
        return count;
    }
}
