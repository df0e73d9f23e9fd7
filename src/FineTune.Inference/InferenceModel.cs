using FineTune.Core.Tokenization;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;
using FineTune.Torch.Lora;
using CoreChatMessage = FineTune.Core.Data.ChatMessage;

namespace FineTune.Inference;

/// <summary>What a request asks of the sampler; null takes the default (greedy, the model's max_new_tokens).</summary>
internal sealed record SamplingSettings(
    int? MaxTokens = null,
    double? Temperature = null,
    double? TopP = null,
    long? Seed = null,
    IReadOnlyList<string>? Stop = null);

/// <summary>A validated request: the prompt's ids and how to continue them.</summary>
internal sealed record InferenceRequest(IReadOnlyList<int> PromptIds, GenerationOptions Options,
    IReadOnlyList<string> StopSequences);

/// <param name="Text">The answer (up to, not including, a stop sequence).</param>
/// <param name="PromptTokens">Tokens of the prompt as rendered.</param>
/// <param name="CompletionTokens">Tokens generated, the stop token included.</param>
/// <param name="FinishReason">"stop" (a stop token or stop sequence ended it) or "length" (max tokens did).</param>
internal sealed record InferenceResult(string Text, int PromptTokens, int CompletionTokens, string FinishReason);

/// <summary>
/// One loaded model answering requests one at a time: a request waits its turn in arrival order (a FIFO queue,
/// not batching), so concurrent callers each get the answer they would get alone. The model and its key/value
/// cache are not shared between requests.
/// </summary>
internal sealed class InferenceModel : IDisposable
{
    /// <summary>OpenAI's bounds, which the server checks too.</summary>
    public const double MaxTemperature = 2.0;

    private readonly ChatSession _session;
    private readonly SemaphoreSlim _turn = new(1, 1);
    private int _waiting;

    public string ModelId { get; }
    public ModelLocation Location { get; }
    public int ContextLength => _session.Model.Config.MaxPositionEmbeddings;
    public int DefaultMaxTokens => _session.DefaultMaxNewTokens;

    /// <summary>Requests queued or running now.</summary>
    public int Pending => Volatile.Read(ref _waiting);

    private InferenceModel(ChatSession session, ModelLocation location, string modelId)
    {
        _session = session;
        Location = location;
        ModelId = modelId;
    }

    public static InferenceModel Load(ModelLocation location, string? modelId = null)
    {
        var session = ChatSession.Open(location.ModelDirectory);
        try
        {
            // Applied unmerged: the base weights stay as they are on disk, the adapter adds its update.
            if (location.AdapterDirectory is { } adapter) LoraAdapter.LoadAdapter(session.Model, adapter);
        }
        catch
        {
            session.Dispose();
            throw;
        }
        return new InferenceModel(session, location, modelId ?? location.DefaultModelId);
    }

    /// <summary>A chat request: the conversation rendered with the model's own chat template.</summary>
    public InferenceRequest PrepareChat(IReadOnlyList<CoreChatMessage> conversation, SamplingSettings settings)
    {
        if (conversation.Count == 0)
            throw new ArgumentException("messages must hold at least one message", "messages");
        var ids = _session.Tokenizer.EncodeConversation(conversation, addGenerationPrompt: true);
        return Prepare(ids, settings, _session.Tokenizer.StopTokenIds, "messages");
    }

    /// <summary>A raw completion: the prompt as text, no template and no special tokens (as <c>generate</c>).</summary>
    public InferenceRequest PrepareCompletion(string prompt, SamplingSettings settings)
    {
        var ids = _session.Tokenizer.Encode(prompt);
        if (ids.Count == 0) throw new ArgumentException("prompt is empty", "prompt");
        var stops = new List<int>();
        if (_session.Model.Config.EosTokenId is { } eos) stops.Add(eos);
        if (_session.Tokenizer is ChatTokenizer { EosTokenId: { } tokenizerEos } && !stops.Contains(tokenizerEos))
            stops.Add(tokenizerEos);
        return Prepare(ids, settings, stops, "prompt");
    }

    private InferenceRequest Prepare(IReadOnlyList<int> promptIds, SamplingSettings settings,
        IReadOnlyList<int> stopTokenIds, string promptName)
    {
        if (settings.Temperature is { } t && (double.IsNaN(t) || t < 0 || t > MaxTemperature))
            throw new ArgumentOutOfRangeException("temperature", t,
                $"temperature must be between 0 and {MaxTemperature} (0 is greedy)");
        if (settings.TopP is { } p && (double.IsNaN(p) || p <= 0 || p > 1))
            throw new ArgumentOutOfRangeException("top_p", p, "top_p must be above 0 and at most 1");
        if (settings.MaxTokens is < 1)
            throw new ArgumentOutOfRangeException("max_tokens", settings.MaxTokens, "max_tokens must be at least 1");
        var room = ContextLength - promptIds.Count;
        if (room < 1 || settings.MaxTokens > room)
        {
            var asked = settings.MaxTokens ?? 1;
            throw new ArgumentException($"This model's maximum context length is {ContextLength} tokens. However, " +
                $"you requested {promptIds.Count + asked} tokens ({promptIds.Count} in the {promptName}, {asked} in " +
                $"the completion). Please reduce the length of the {promptName} or of the completion.",
                settings.MaxTokens > room && room >= 1 ? "max_tokens" : promptName);
        }
        var options = new GenerationOptions(
            MaxNewTokens: settings.MaxTokens ?? Math.Min(DefaultMaxTokens, room),
            Temperature: settings.Temperature ?? 0,
            TopP: settings.TopP ?? 1.0,
            Seed: settings.Seed ?? 0,
            StopTokenIds: stopTokenIds);
        var stops = (settings.Stop ?? []).Where(s => s.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        return new InferenceRequest(promptIds, options, stops);
    }

    /// <summary>
    /// Waits for the model, then generates. <paramref name="onText"/> gets the answer in pieces that concatenate to
    /// <see cref="InferenceResult.Text"/>; it runs on the generating thread, so it should be quick.
    /// </summary>
    public async Task<InferenceResult> RunAsync(InferenceRequest request, Action<string>? onText,
        CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await Task.Run(() => Generate(request, onText, cancellationToken), CancellationToken.None)
                    .ConfigureAwait(false);
            }
            finally { _turn.Release(); }
        }
        finally { Interlocked.Decrement(ref _waiting); }
    }

    private InferenceResult Generate(InferenceRequest request, Action<string>? onText,
        CancellationToken cancellationToken)
    {
        var stopIds = request.Options.StopTokenIds ?? [];
        var text = new IncrementalText(_session.Tokenizer);
        var answer = new StopSequenceFilter(request.StopSequences, piece => onText?.Invoke(piece));
        var generated = 0;
        var finish = "length";
        try
        {
            TextGenerator.GenerateIds(_session.Model, request.PromptIds, request.Options, id =>
            {
                generated++;
                if (stopIds.Contains(id))
                {
                    finish = "stop";
                    return;
                }
                if (answer.Push(text.Add(id))) throw new StopSequenceReached();
            }, cancellationToken);
            if (answer.Push(text.Flush(cutOff: finish == "length"))) finish = "stop";
            else answer.Flush();
        }
        catch (StopSequenceReached) { finish = "stop"; }
        return new InferenceResult(answer.Text, request.PromptIds.Count, generated, finish);
    }

    public void Dispose()
    {
        _session.Dispose();
        _turn.Dispose();
    }

    /// <summary>Ends the generation loop from inside its token callback.</summary>
    private sealed class StopSequenceReached : Exception;
}
