using System.Text.Encodings.Web;
using System.Text.Json;
using FineTune.Core.Caching;
using FineTune.Core.Data;
using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;
using FineTune.Core.Pipeline;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Stages;

/// <summary>
/// Renders the format stage's conversations with the chat template, tokenizes them with loss labels and writes
/// train.tokens / validation.tokens, the tokenizer files the model will ship with, and summary.json.
/// </summary>
internal sealed class TokenizeStage : Stage<TokenizeSettings>
{
    public override string Name => "tokenize";
    public override int ImplementationVersion => 2;
    public override IReadOnlyList<string> DependsOn => ["format"];

    private const string SettingPath = "stages.tokenize.tokenizer";
    private const string TemplateSettingPath = "stages.tokenize.chat_template";

    protected override IReadOnlyList<StageInput> ReadInputs(StageContext context, TokenizeSettings settings)
    {
        var inputs = new List<StageInput>();
        if (TemplateFile(context, settings) is { } templateFile)
        {
            if (!File.Exists(templateFile))
                throw new FineTuneException(context.Pipeline.Locate(TemplateSettingPath)
                    .Error(DiagnosticCodes.ChatTemplateNotFound,
                    $"chat_template '{settings.ChatTemplate}' is neither 'model', a built-in template " +
                    $"({string.Join(", ", BuiltinChatTemplates.Names)}) nor an existing .jinja file"));
            inputs.Add(StageInput.File("chat_template", templateFile));
        }
        if (settings.Tokenizer == ChatTokenizer.Gpt2)
        {
            inputs.Add(StageInput.Builtin("tokenizer gpt2", ChatTokenizer.Gpt2Identity));
            return inputs;
        }

        if (ModelSetting.IdentifyHub(context, settings.Tokenizer, SettingPath, DiagnosticCodes.TokenizerNotFound,
            TokenizerHint, ModelSource.TokenizerFilePatterns) is { } hub)
        {
            if (hub.File(ChatTokenizer.TokenizerJsonFile) is not { } hubJson)
                throw NoTokenizerJson(context, settings);
            inputs.Add(hub.Input("tokenizer/tokenizer.json", hubJson));
            if (hub.File(ChatTokenizer.TokenizerConfigFile) is { } hubConfig)
                inputs.Add(hub.Input("tokenizer/tokenizer_config.json", hubConfig));
            return inputs;
        }

        var folder = TokenizerFolder(context, settings);
        var json = Path.Combine(folder.Folder, ChatTokenizer.TokenizerJsonFile);
        if (!File.Exists(json)) throw NoTokenizerJson(context, settings);
        inputs.Add(folder.Input("tokenizer/tokenizer.json", json));
        var config = Path.Combine(folder.Folder, ChatTokenizer.TokenizerConfigFile);
        if (File.Exists(config)) inputs.Add(folder.Input("tokenizer/tokenizer_config.json", config));
        return inputs;
    }

    /// <summary>The .jinja file the chat_template setting names, or null for 'model' and the built-in names.</summary>
    private static string? TemplateFile(StageContext context, TokenizeSettings settings) =>
        settings.ChatTemplate == ChatTokenizer.ModelTemplate || BuiltinChatTemplates.IsBuiltin(settings.ChatTemplate)
            ? null
            : context.ResolvePath(settings.ChatTemplate);

    private const string TokenizerHint = "use 'gpt2', a folder holding a Hugging Face tokenizer.json (and " +
        "tokenizer_config.json), or a Hub model id";

    private static FineTuneException NoTokenizerJson(StageContext context, TokenizeSettings settings) =>
        new(context.Pipeline.Locate(SettingPath).Error(DiagnosticCodes.TokenizerNotFound,
            $"'{settings.Tokenizer}' has no tokenizer.json; {TokenizerHint}"));

    private static ModelLocation TokenizerFolder(StageContext context, TokenizeSettings settings,
        CancellationToken cancellationToken = default) =>
        ModelSetting.Resolve(context, settings.Tokenizer, SettingPath, DiagnosticCodes.TokenizerNotFound,
            TokenizerHint, ModelSource.TokenizerFilePatterns, cancellationToken);

    protected override Task RunAsync(StageContext context, TokenizeSettings settings,
        CancellationToken cancellationToken)
    {
        ReadInputs(context, settings); // the same existence checks, with the pipeline location, before loading
        var pipelineDirectory = context.PipelineDirectory;
        var tokenizer = settings.Tokenizer == ChatTokenizer.Gpt2
            ? ChatTokenizer.LoadGpt2(settings.ChatTemplate, pipelineDirectory)
            : ChatTokenizer.LoadFolder(TokenizerFolder(context, settings, cancellationToken).Folder,
                settings.ChatTemplate,
                pipelineDirectory);
        var trainOn = Enum.Parse<TrainOn>(settings.TrainOn, ignoreCase: true);
        var formatDir = context.Input("format");
        var tokenizerDirectory = Path.Combine(context.OutputDirectory, "tokenizer");
        var conversations = new[] { "train", "validation" }.ToDictionary(split => split, split =>
            Path.Combine(formatDir, split + ".jsonl") is var source && File.Exists(source)
                ? ConversationFile.Read(source).ToList() : []);

        if (settings.Vocabulary == "used")
        {
            // Encode once to learn which tokens the data uses, prune, then encode for real with the pruned tokenizer.
            var used = new HashSet<int>();
            foreach (var conversation in conversations.Values.SelectMany(c => c))
                used.UnionWith(tokenizer.Tokenize(conversation, TrainOn.All).Ids); // the ids do not depend on the mask
            tokenizer.WriteFiles(tokenizerDirectory, settings.MaxLength);
            var pruned = VocabularyPruning.PruneFolder(tokenizerDirectory, used);
            context.Log.Info($"vocabulary pruned to the tokens the data uses: {pruned.OriginalSize:N0} -> " +
                $"{pruned.PrunedSize:N0}");
            tokenizer = ChatTokenizer.LoadFolder(tokenizerDirectory);
        }

        var splits = new Dictionary<string, SplitSummary>();
        foreach (var (split, examples) in conversations)
            splits[split] = TokenizeSplit(context, tokenizer, examples, split, settings.MaxLength, trainOn,
                Path.Combine(context.OutputDirectory, split + ".tokens"), cancellationToken);
        if (splits["train"].Examples == 0)
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.NoExampleFitsMaxLength,
                $"no training example is left after tokenizing ({splits["train"].Dropped} dropped because none of " +
                $"their trained tokens fit in max_length {settings.MaxLength}); raise max_length or check train_on"),
                ExitCodes.StageFailed);

        if (settings.Vocabulary == "full") tokenizer.WriteFiles(tokenizerDirectory, settings.MaxLength);

        var train = splits["train"];
        context.Summary["examples"] = train.Examples;
        context.Summary["tokens"] = train.Tokens;
        context.Summary["trained_tokens"] = train.TrainedTokens;
        context.Summary["truncated"] = train.Truncated;
        context.Summary["dropped"] = train.Dropped;
        context.Summary["length_p50"] = train.LengthP50;
        context.Summary["length_p90"] = train.LengthP90;
        context.Summary["length_p99"] = train.LengthP99;
        context.Summary["length_max"] = train.LengthMax;
        context.Summary["validation_examples"] = splits["validation"].Examples;
        context.Summary["vocab_size"] = tokenizer.VocabSize;

        var summary = new Dictionary<string, object>
        {
            ["tokenizer"] = settings.Tokenizer,
            ["chat_template"] = settings.ChatTemplate,
            ["train_on"] = settings.TrainOn,
            ["max_length"] = settings.MaxLength,
            ["vocab_size"] = tokenizer.VocabSize,
            ["pad_token_id"] = tokenizer.PadTokenId,
            ["stop_token_ids"] = tokenizer.StopTokenIds,
            ["train"] = train,
            ["validation"] = splits["validation"],
        };
        File.WriteAllText(Path.Combine(context.OutputDirectory, SummaryFile),
            JsonSerializer.Serialize(summary, SummaryJson) + "\n");
        return Task.CompletedTask;
    }

    public const string SummaryFile = "summary.json";

    /// <summary>The longest sequence a tokenize output holds, as its summary records it.</summary>
    public static int MaxLengthOf(string tokenizeOutput)
    {
        var path = Path.Combine(tokenizeOutput, SummaryFile);
        using var summary = JsonDocument.Parse(File.ReadAllBytes(path));
        return summary.RootElement.TryGetProperty("max_length", out var maxLength)
            && maxLength.TryGetInt32(out var value)
            ? value
            : throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.TokenizeSummaryIncomplete,
                "the tokenize summary records no max_length; run the tokenize stage again", path),
                ExitCodes.StageFailed);
    }

    private static readonly JsonSerializerOptions SummaryJson = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    internal static SplitSummary TokenizeSplit(StageContext context, ChatTokenizer tokenizer,
        IReadOnlyList<Conversation> conversations,
        string split, int maxLength, TrainOn trainOn, string outputPath, CancellationToken cancellationToken)
    {
        var builder = new TokenizedDataset.Builder();
        var lengths = new List<int>(conversations.Count);
        long tokens = 0, trainedTokens = 0, trainedBeforeTruncation = 0;
        int truncated = 0, dropped = 0, endOfTurnUntrained = 0;
        var droppedExamples = new List<int>();
        var progressEvery = Math.Max(1, conversations.Count / 20);

        for (var i = 0; i < conversations.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var example = tokenizer.Tokenize(conversations[i], trainOn, out var endOfTurnTrained);
            if (!endOfTurnTrained) endOfTurnUntrained++;
            var trainedInFull = CountTrained(example.Labels);
            trainedBeforeTruncation += trainedInFull;
            var length = example.Ids.Length;
            if (length > maxLength)
            {
                truncated++;
                length = maxLength; // keep the beginning: the prompt and the start of the answer
            }
            var trained = CountTrained(example.Labels.AsSpan(0, length));
            if (trained == 0)
            {
                dropped++;
                if (droppedExamples.Count < 5) droppedExamples.Add(conversations[i].SourceIndex);
            }
            else
            {
                builder.Add(example.Ids.AsSpan(0, length), example.Labels.AsSpan(0, length));
                lengths.Add(length);
                tokens += length;
                trainedTokens += trained;
            }
            if ((i + 1) % progressEvery == 0 || i + 1 == conversations.Count)
                context.Log.Progress(new StageProgress(i + 1, conversations.Count, "example", split));
        }
        builder.Write(outputPath);

        if (dropped > 0)
            context.Log.Warning($"{split}: dropped {dropped} of {conversations.Count} examples with no trained token " +
                $"within max_length {maxLength} " +
                $"(records {string.Join(", ", droppedExamples)}{(dropped > droppedExamples.Count ? ", ..." : "")})");
        if (endOfTurnUntrained > 0)
            context.Log.Warning($"{split}: in {endOfTurnUntrained} of {conversations.Count} examples no special " +
                $"token ends a trained assistant turn: " +
                "the chat template puts the end-of-turn token outside what is trained, so the model may not learn to " +
                "stop; check the template, or run 'dotnet finetune inspect'");
        var lostShare = trainedBeforeTruncation == 0 ? 0 : 1 - (double)trainedTokens / trainedBeforeTruncation;
        if (truncated > 0)
            context.Log.Info($"{split}: truncated {truncated} of {conversations.Count} examples to {maxLength} " +
                $"tokens, losing {lostShare:P1} of the trained tokens");

        lengths.Sort();
        return new SplitSummary(
            Examples: lengths.Count, Tokens: tokens, TrainedTokens: trainedTokens, Truncated: truncated,
                Dropped: dropped,
            TrainedTokensLostShare: Math.Round(lostShare, 6),
            LengthP50: Percentile(lengths, 0.50), LengthP90: Percentile(lengths, 0.90),
                LengthP99: Percentile(lengths, 0.99),
            LengthMax: lengths.Count == 0 ? 0 : lengths[^1], LengthHistogram: Histogram(lengths, maxLength));
    }

    private static int CountTrained(ReadOnlySpan<int> labels)
    {
        var count = 0;
        foreach (var label in labels) if (label != TokenizedDataset.IgnoreLabel) count++;
        return count;
    }

    /// <summary>Nearest-rank percentile of sorted values.</summary>
    internal static int Percentile(List<int> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    /// <summary>Eight equal-width buckets from 0 to max_length, labelled "lo-hi" (inclusive token counts).</summary>
    internal static IReadOnlyList<HistogramBucket> Histogram(List<int> lengths, int maxLength)
    {
        const int bucketCount = 8;
        var width = Math.Max(1, (maxLength + bucketCount - 1) / bucketCount);
        var buckets = new List<HistogramBucket>();
        for (var b = 0; b * width < maxLength; b++)
        {
            var lo = b * width + 1;
            var hi = Math.Min(maxLength, (b + 1) * width);
            buckets.Add(new HistogramBucket(lo, hi, lengths.Count(l => l >= lo && l <= hi)));
        }
        return buckets;
    }
}

internal sealed record HistogramBucket(int From, int To, int Examples);

internal sealed record SplitSummary(int Examples, long Tokens, long TrainedTokens, int Truncated, int Dropped,
    double TrainedTokensLostShare,
    int LengthP50, int LengthP90, int LengthP99, int LengthMax, IReadOnlyList<HistogramBucket> LengthHistogram);
