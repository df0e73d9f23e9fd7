using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using CoreChatMessage = FineTune.Core.Data.ChatMessage;

namespace FineTune.Inference;

/// <summary>
/// An <see cref="IChatClient"/> over a model fine-tuned with <c>dotnet finetune</c>: an exported model folder, a
/// base model plus a PEFT adapter, or a pipeline file whose export stage has run. Conversations are rendered with
/// the model's own chat template.
/// </summary>
/// <remarks>
/// <para>Sampling: greedy unless <see cref="ChatOptions.Temperature"/> is above 0; <see cref="ChatOptions.TopP"/>,
/// <see cref="ChatOptions.Seed"/>, <see cref="ChatOptions.MaxOutputTokens"/> (default: the model's
/// generation_config.json) and <see cref="ChatOptions.StopSequences"/> apply as OpenAI defines them. Invalid values
/// throw <see cref="ArgumentException"/> before anything runs.</para>
/// <para>Thread safety: any number of threads may call the client at once. Requests queue and run one at a time in
/// arrival order (no batching), so each answer is the one the request would get alone.</para>
/// </remarks>
public sealed class FineTunedChatClient : IChatClient
{
    private readonly InferenceModel _model;

    internal FineTunedChatClient(InferenceModel model)
    {
        _model = model;
        Metadata = new ChatClientMetadata("finetune", providerUri: null, defaultModelId: model.ModelId);
    }

    /// <summary>Loads a model: a model folder or Hugging Face Hub id, a PEFT adapter folder (its base is the one
    /// adapter_config.json names), or a pipeline file (its committed export).</summary>
    public static FineTunedChatClient Open(string modelOrPipeline, FineTunedChatClientOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelOrPipeline);
        var location = ModelLocator.Locate(modelOrPipeline, options?.AdapterPath);
        return new FineTunedChatClient(InferenceModel.Load(location, options?.ModelId));
    }

    /// <summary>The provider ("finetune") and the model's id.</summary>
    public ChatClientMetadata Metadata { get; }

    internal InferenceModel Model => _model;

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        var result = await _model.RunAsync(request, onText: null, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = NewResponseId(),
            ModelId = _model.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReason(result),
            Usage = Usage(result),
        };
    }

    /// <inheritdoc />
    /// <remarks>Each update carries a piece of the answer; the last one carries the finish reason and a
    /// <see cref="UsageContent"/>. Stopping the enumeration early, or cancelling, stops the generation.</remarks>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = Prepare(messages, options);
        var responseId = NewResponseId();
        var created = DateTimeOffset.UtcNow;
        using var generation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions
            { SingleReader = true, SingleWriter = true });
        var run = _model.RunAsync(request, piece => pieces.Writer.TryWrite(piece), generation.Token);
        _ = run.ContinueWith(t => pieces.Writer.TryComplete(t.Exception?.InnerException), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            await foreach (var piece in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // ReadAllAsync looks at the token only when it has to wait, and pieces may be queued already.
                cancellationToken.ThrowIfCancellationRequested();
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
                {
                    ResponseId = responseId, MessageId = responseId, ModelId = _model.ModelId, CreatedAt = created,
                };
            }
            var result = await run.ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ResponseId = responseId, MessageId = responseId, ModelId = _model.ModelId, CreatedAt = created,
                FinishReason = FinishReason(result),
            };
        }
        finally
        {
            // A consumer that stops reading ends the generation too, and the model is free once this returns.
            await generation.CancelAsync().ConfigureAwait(false);
            try { await run.ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException || run.IsFaulted) { }
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Frees the model's weights.</summary>
    public void Dispose() => _model.Dispose();

    private InferenceRequest Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var conversation = messages.Select(m => new CoreChatMessage(m.Role.Value, m.Text)).ToList();
        var settings = new SamplingSettings(options?.MaxOutputTokens, options?.Temperature, options?.TopP,
            options?.Seed, options?.StopSequences?.ToList());
        return _model.PrepareChat(conversation, settings);
    }

    private static string NewResponseId() => "chatcmpl-" + Guid.NewGuid().ToString("N");

    private static ChatFinishReason FinishReason(InferenceResult result) =>
        result.FinishReason == "stop" ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails Usage(InferenceResult result) => new()
    {
        InputTokenCount = result.PromptTokens,
        OutputTokenCount = result.CompletionTokens,
        TotalTokenCount = result.PromptTokens + result.CompletionTokens,
    };
}
