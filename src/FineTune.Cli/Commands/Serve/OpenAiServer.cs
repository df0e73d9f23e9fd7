using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using FineTune.Inference;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace FineTune.Cli.Commands.Serve;

/// <param name="QueueLength">Requests that may wait for the model while one runs; one more is answered 429.</param>
/// <param name="ShutdownGrace">How long a stop lets requests in flight finish before it cancels them.</param>
internal sealed record ServeOptions(string Host = "127.0.0.1", int Port = 8000, string? ApiKey = null,
    int QueueLength = 8, TimeSpan? ShutdownGrace = null);

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="InferenceModel"/>: /v1/chat/completions and
/// /v1/completions (with server-sent events when <c>stream</c> is true), /v1/models and /health. Errors are
/// OpenAI's error object, never a stack trace. Requests run one at a time (the model's queue); the queue is
/// bounded, and a request that finds it full gets 429 at once.
/// </summary>
internal sealed class OpenAiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly InferenceModel _model;
    private readonly ServeOptions _options;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _admitted;

    /// <summary>The address it listens on, e.g. http://127.0.0.1:8000 (the real port when 0 was asked).</summary>
    public Uri Address { get; private set; } = null!;

    private OpenAiServer(WebApplication app, InferenceModel model, ServeOptions options)
    {
        _app = app;
        _model = model;
        _options = options;
    }

    public static async Task<OpenAiServer> StartAsync(InferenceModel model, ServeOptions options,
        CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o =>
            o.ShutdownTimeout = options.ShutdownGrace ?? TimeSpan.FromSeconds(10));
        var address = IPAddress.TryParse(options.Host, out var ip) ? ip
            : options.Host == "localhost" ? IPAddress.Loopback
            : throw new ArgumentException($"--host must be an IP address, not '{options.Host}'");
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(address, options.Port));
        var app = builder.Build();
        var server = new OpenAiServer(app, model, options);
        server.Map();
        await app.StartAsync(cancellationToken);
        var bound = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(bound);
        return server;
    }

    /// <summary>Stops listening, lets the requests in flight finish within the grace period, then cancels
    /// them.</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    private void Map()
    {
        _app.Use(async (context, next) =>
        {
            try
            {
                if (context.Request.Path.StartsWithSegments("/v1")) Authorize(context.Request);
                await next(context);
            }
            catch (OpenAiError error) { await WriteError(context, error); }
            catch (ArgumentException e) { await WriteError(context, OpenAiError.FromArgument(e)); }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { }
            catch (Exception) when (!context.Response.HasStarted)
            {
                await WriteError(context, new OpenAiError(StatusCodes.Status500InternalServerError,
                    "The server failed to answer this request.", "server_error"));
            }
        });
        _app.MapGet("/health", () => Results.Json(new JsonObject { ["status"] = "ok", ["model"] = _model.ModelId }));
        _app.MapGet("/v1/models", () => Results.Text(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(ModelObject()),
        }.ToJsonString(), "application/json"));
        _app.MapGet("/v1/models/{id}", (string id) => id == _model.ModelId
            ? Results.Text(ModelObject().ToJsonString(), "application/json")
            : throw UnknownModel(id));
        _app.MapPost("/v1/chat/completions", context => Complete(context, chat: true));
        _app.MapPost("/v1/completions", context => Complete(context, chat: false));
        _app.MapFallback(context => throw new OpenAiError(StatusCodes.Status404NotFound,
            $"Unknown request URL: {context.Request.Method} {context.Request.Path}.", "invalid_request_error",
            code: "unknown_url"));
    }

    private JsonObject ModelObject() => new()
    {
        ["id"] = _model.ModelId,
        ["object"] = "model",
        ["created"] = _created,
        ["owned_by"] = "finetune",
        ["context_length"] = _model.ContextLength,
    };

    private void Authorize(HttpRequest request)
    {
        if (_options.ApiKey is not { } key) return;
        var given = request.Headers.Authorization.ToString();
        if (given == "Bearer " + key) return;
        throw new OpenAiError(StatusCodes.Status401Unauthorized, given.Length == 0
            ? "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'."
            : "Incorrect API key provided.", "invalid_request_error", code: "invalid_api_key");
    }

    private static OpenAiError UnknownModel(string model) => new(StatusCodes.Status404NotFound,
        $"The model '{model}' does not exist; this server serves one model (GET /v1/models).",
        "invalid_request_error", "model", "model_not_found");

    private async Task Complete(HttpContext context, bool chat)
    {
        var body = await OpenAiRequest.ReadBodyAsync(context.Request.Body, context.RequestAborted);
        var request = chat ? OpenAiRequest.ParseChat(body) : OpenAiRequest.ParseCompletion(body);
        if (request.Model != _model.ModelId) throw UnknownModel(request.Model);
        var prepared = chat ? _model.PrepareChat(request.Messages!, request.Sampling)
            : _model.PrepareCompletion(request.Prompt!, request.Sampling);

        if (Interlocked.Increment(ref _admitted) > _options.QueueLength + 1)
        {
            Interlocked.Decrement(ref _admitted);
            throw new OpenAiError(StatusCodes.Status429TooManyRequests,
                $"The server is busy: {_options.QueueLength} request(s) already wait for the model. Retry later.",
                "requests", code: "rate_limit_exceeded");
        }
        try
        {
            var id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var response = new CompletionWriter(id, created, _model.ModelId, chat);
            if (request.Stream) await Stream(context, prepared, response, request.IncludeUsage);
            else
            {
                var result = await _model.RunAsync(prepared, onText: null, context.RequestAborted);
                await WriteJson(context, StatusCodes.Status200OK, response.Whole(result));
            }
        }
        finally { Interlocked.Decrement(ref _admitted); }
    }

    /// <summary>Server-sent events: one chunk per piece of text, a last chunk with the finish reason, usage when
    /// asked (stream_options.include_usage), then <c>data: [DONE]</c>.</summary>
    private async Task Stream(HttpContext context, InferenceRequest prepared, CompletionWriter response,
        bool includeUsage)
    {
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions
            { SingleReader = true, SingleWriter = true });
        var run = _model.RunAsync(prepared, piece => pieces.Writer.TryWrite(piece), context.RequestAborted);
        _ = run.ContinueWith(t => pieces.Writer.TryComplete(t.Exception?.InnerException), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        if (response.Chat) await Event(context, response.Chunk(piece: "", role: true));
        await foreach (var piece in pieces.Reader.ReadAllAsync(context.RequestAborted))
            await Event(context, response.Chunk(piece));
        var result = await run;
        await Event(context, response.Chunk(piece: "", finishReason: result.FinishReason));
        if (includeUsage) await Event(context, response.UsageChunk(result));
        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
    }

    private static async Task Event(HttpContext context, JsonObject chunk)
    {
        await context.Response.WriteAsync("data: " + chunk.ToJsonString() + "\n\n", Encoding.UTF8,
            context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static Task WriteError(HttpContext context, OpenAiError error)
    {
        if (context.Response.HasStarted) return Task.CompletedTask; // mid-stream: the stream just ends
        return WriteJson(context, error.Status, error.ToJson());
    }

    private static async Task WriteJson(HttpContext context, int status, JsonObject json)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(json.ToJsonString(), Encoding.UTF8);
    }

    /// <summary>The response objects of the two endpoints, whole or in chunks.</summary>
    private sealed record CompletionWriter(string Id, long Created, string Model, bool Chat)
    {
        public JsonObject Whole(InferenceResult result) => new()
        {
            ["id"] = Id,
            ["object"] = Chat ? "chat.completion" : "text_completion",
            ["created"] = Created,
            ["model"] = Model,
            ["choices"] = new JsonArray(Chat
                ? new JsonObject
                {
                    ["index"] = 0,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = result.Text },
                    ["logprobs"] = null,
                    ["finish_reason"] = result.FinishReason,
                }
                : new JsonObject
                {
                    ["text"] = result.Text, ["index"] = 0, ["logprobs"] = null,
                    ["finish_reason"] = result.FinishReason,
                }),
            ["usage"] = Usage(result),
        };

        public JsonObject Chunk(string piece, bool role = false, string? finishReason = null)
        {
            JsonObject choice;
            if (Chat)
            {
                var delta = new JsonObject();
                if (role) delta["role"] = "assistant";
                if (finishReason is null) delta["content"] = piece;
                choice = new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = null };
            }
            else choice = new JsonObject { ["text"] = piece, ["index"] = 0, ["logprobs"] = null };
            choice["finish_reason"] = finishReason;
            return Envelope(new JsonArray(choice));
        }

        public JsonObject UsageChunk(InferenceResult result)
        {
            var chunk = Envelope([]);
            chunk["usage"] = Usage(result);
            return chunk;
        }

        private JsonObject Envelope(JsonArray choices) => new()
        {
            ["id"] = Id,
            ["object"] = Chat ? "chat.completion.chunk" : "text_completion",
            ["created"] = Created,
            ["model"] = Model,
            ["choices"] = choices,
        };

        private static JsonObject Usage(InferenceResult result) => new()
        {
            ["prompt_tokens"] = result.PromptTokens,
            ["completion_tokens"] = result.CompletionTokens,
            ["total_tokens"] = result.PromptTokens + result.CompletionTokens,
        };
    }
}
