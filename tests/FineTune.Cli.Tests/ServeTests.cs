using System.ClientModel;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using FineTune.Cli.Commands.Serve;
using FineTune.Inference;
using FineTune.Inference.Tests;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace FineTune.Cli.Tests;

/// <summary>
/// serve on a free 127.0.0.1 port, driven by the official OpenAI .NET client and by raw HTTP; the answers are
/// checked against the chat and generate commands.
/// </summary>
public sealed class ServeTests(TinyExport export) : IClassFixture<TinyExport>, IAsyncLifetime
{
    private const string ApiKey = "test-key";
    private InferenceModel _model = null!;
    private OpenAiServer _server = null!;
    private readonly HttpClient _http = new();

    public async Task InitializeAsync()
    {
        _model = InferenceModel.Load(ModelLocator.Locate(export.ModelDirectory), modelId: "tiny");
        _server = await OpenAiServer.StartAsync(_model, new ServeOptions(Port: 0, ApiKey: ApiKey, QueueLength: 1));
        _http.BaseAddress = _server.Address;
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        _model.Dispose();
    }

    private ChatClient OpenAiChat(string model = "tiny", string key = ApiKey) => new(model, new ApiKeyCredential(key),
        new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1"), NetworkTimeout = TimeSpan.FromMinutes(1) });

    private async Task<string> CliOutput(params string[] args)
    {
        using var cli = new CliHarness();
        var result = await cli.Run(args);
        Assert.True(result.ExitCode == 0, result.Error);
        return result.Out.TrimEnd('\n');
    }

    private async Task<(HttpStatusCode Status, JsonObject Json)> Post(string path, string body)
    {
        using var response = await _http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("   at ", text); // never a stack trace
        return (response.StatusCode, JsonNode.Parse(text)!.AsObject());
    }

    [Fact]
    public async Task Chat_completions_through_the_OpenAI_client_equal_the_chat_command()
    {
        var expected = await CliOutput("chat", export.ModelDirectory, "--prompt", "你是谁？");
        ChatCompletion completion = await OpenAiChat().CompleteChatAsync([new UserChatMessage("你是谁？")]);
        Assert.Equal(expected, completion.Content.Single().Text);
        Assert.Equal("tiny", completion.Model);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, TinyExport.MaxNewTokens);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount,
            completion.Usage.TotalTokenCount);

        ChatCompletion limited = await OpenAiChat().CompleteChatAsync([new UserChatMessage("你是谁？")],
            new ChatCompletionOptions { MaxOutputTokenCount = 2 });
        Assert.Equal(ChatFinishReason.Length, limited.FinishReason);
        Assert.Equal(2, limited.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task Streaming_chunks_concatenate_to_the_whole_answer()
    {
        ChatCompletion whole = await OpenAiChat().CompleteChatAsync([new UserChatMessage("Tell me a story")]);
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        var updates = 0;
        await foreach (var update in OpenAiChat().CompleteChatStreamingAsync([new UserChatMessage("Tell me a story")]))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.True(updates > 3);
        Assert.Equal(whole.Content.Single().Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);

        // The wire format, read raw: data lines of chat.completion.chunk, usage when asked, then [DONE].
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent("""
            {"model": "tiny", "messages": [{"role": "user", "content": "Tell me a story"}], "stream": true,
             "stream_options": {"include_usage": true}}
            """, Encoding.UTF8, "application/json"));
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string)c["object"]!));
        Assert.Equal("assistant", (string)chunks[0]["choices"]![0]!["delta"]!["role"]!);
        Assert.Equal(whole.Content.Single().Text, string.Concat(chunks.Select(c =>
            (string?)c["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"])));
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.Equal(whole.Usage.OutputTokenCount, (int)chunks[^1]["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Completions_continue_raw_text_as_the_generate_command()
    {
        var expected = await CliOutput("generate", export.ModelDirectory, "--prompt", "Once upon a time",
            "--max-new-tokens", "5");
        var (status, json) = await Post("v1/completions",
            """{"model": "tiny", "prompt": "Once upon a time", "max_tokens": 5}""");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("text_completion", (string)json["object"]!);
        Assert.Equal(expected, (string)json["choices"]![0]!["text"]!);
        Assert.Equal(5, (int)json["usage"]!["completion_tokens"]!);

        using var response = await _http.PostAsync("v1/completions", new StringContent(
            """{"model": "tiny", "prompt": "Once upon a time", "max_tokens": 5, "stream": true}""",
            Encoding.UTF8, "application/json"));
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        Assert.Equal(expected, string.Concat(events[..^1].Select(e =>
            (string)JsonNode.Parse(e["data: ".Length..])!["choices"]![0]!["text"]!)));
    }

    [Fact]
    public async Task Models_and_health()
    {
        var models = new OpenAIModelClient(new ApiKeyCredential(ApiKey),
            new OpenAIClientOptions { Endpoint = new Uri(_server.Address, "v1") });
        OpenAIModelCollection list = await models.GetModelsAsync();
        Assert.Equal("tiny", list.Single().Id);
        OpenAIModel one = await models.GetModelAsync("tiny");
        Assert.Equal("finetune", one.OwnedBy);

        using var anonymous = new HttpClient { BaseAddress = _server.Address };
        var health = JsonNode.Parse(await anonymous.GetStringAsync("health"))!;
        Assert.Equal("ok", (string)health["status"]!);
    }

    [Fact]
    public async Task Bad_requests_get_OpenAI_errors_and_the_server_keeps_serving()
    {
        var (status, json) = await Post("v1/chat/completions", "{\"model\": \"tiny\", \"messages\": [");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_request_error", (string)json["error"]!["type"]!);
        Assert.Contains("not valid JSON", (string)json["error"]!["message"]!);

        (status, json) = await Post("v1/chat/completions", """{"model": "tiny"}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("messages", (string)json["error"]!["param"]!);

        (status, json) = await Post("v1/chat/completions",
            """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("context_length_exceeded", (string)json["error"]!["code"]!);
        Assert.StartsWith("This model's maximum context length is 128 tokens.", (string)json["error"]!["message"]!);

        (status, json) = await Post("v1/completions", $$"""
            {"model": "tiny", "prompt": "{{string.Concat(Enumerable.Repeat("word ", 200))}}"}
            """);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("prompt", (string)json["error"]!["param"]!);

        foreach (var (field, value) in new[] { ("temperature", "2.5"), ("top_p", "0"), ("max_tokens", "0"),
            ("temperature", "\"hot\""), ("n", "2") })
        {
            (status, json) = await Post("v1/chat/completions",
                $$"""{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "{{field}}": {{value}}}""");
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(field, (string)json["error"]!["param"]!);
        }

        var unknown = await Assert.ThrowsAsync<ClientResultException>(() =>
            OpenAiChat(model: "gpt-4o").CompleteChatAsync([new UserChatMessage("Hi")]));
        Assert.Equal(404, unknown.Status);
        Assert.Contains("model_not_found", unknown.Message);

        using var notFound = await _http.GetAsync("v1/engines");
        Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);

        ChatCompletion still = await OpenAiChat().CompleteChatAsync([new UserChatMessage("Hi")]);
        Assert.NotNull(still.Content.Single().Text);
    }

    [Fact]
    public async Task Requests_without_the_api_key_get_401()
    {
        var wrong = await Assert.ThrowsAsync<ClientResultException>(() =>
            OpenAiChat(key: "wrong").CompleteChatAsync([new UserChatMessage("Hi")]));
        Assert.Equal(401, wrong.Status);

        using var anonymous = new HttpClient { BaseAddress = _server.Address };
        using var response = await anonymous.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("invalid_api_key", (string)error["code"]!);
    }

    [Fact]
    public async Task A_full_queue_answers_429_at_once_and_the_queued_requests_complete()
    {
        var expected = await CliOutput("chat", export.ModelDirectory, "--prompt", "Hi");
        using var hold = new ModelHold(_model);
        await hold.Started;
        // Queue length 1: one request runs (here: the hold), so of the burst one waits and the rest are refused.
        var body = """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}""";
        var first = Post("v1/chat/completions", body);
        var second = Post("v1/chat/completions", body);
        await WaitUntil(() => _model.Pending == 3);
        var burst = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Post("v1/chat/completions", body)));
        Assert.All(burst, r =>
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, r.Status);
            Assert.Equal("rate_limit_exceeded", (string)r.Json["error"]!["code"]!);
        });

        hold.Release();
        foreach (var (status, json) in new[] { await first, await second })
        {
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(expected, (string)json["choices"]![0]!["message"]!["content"]!);
        }
    }

    [Fact]
    public async Task Stopping_finishes_the_requests_in_flight_and_then_refuses_connections()
    {
        var expected = await CliOutput("chat", export.ModelDirectory, "--prompt", "Hi");
        using (var hold = new ModelHold(_model))
        {
            await hold.Started;
            var inFlight = Post("v1/chat/completions",
                """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}""");
            await WaitUntil(() => _model.Pending == 2);
            var stopping = _server.StopAsync();
            hold.Release();
            var (status, json) = await inFlight;
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(expected, (string)json["choices"]![0]!["message"]!["content"]!);
            await stopping;
        }
        await Assert.ThrowsAsync<HttpRequestException>(() => _http.GetAsync("health"));
    }

    [Fact]
    public async Task Stopping_cancels_what_does_not_finish_within_the_grace_period()
    {
        await using var server = await OpenAiServer.StartAsync(_model,
            new ServeOptions(Port: 0, ShutdownGrace: TimeSpan.FromMilliseconds(300)));
        using var client = new HttpClient { BaseAddress = server.Address };
        using (var hold = new ModelHold(_model))
        {
            await hold.Started;
            var inFlight = client.PostAsync("v1/chat/completions", new StringContent(
                """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}""", Encoding.UTF8));
            await WaitUntil(() => _model.Pending == 2);
            await server.StopAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => inFlight); // the connection was aborted
            await WaitUntil(() => _model.Pending == 1); // and its generation never started
        }
        await WaitUntil(() => _model.Pending == 0);
    }

    [Fact]
    public async Task The_command_refuses_bad_options_and_a_taken_port()
    {
        using var cli = new CliHarness();
        var port = await cli.Run("serve", export.ModelDirectory, "--port", "70000");
        Assert.Equal(2, port.ExitCode);
        Assert.Contains("error FT1002: --port must be between 0 and 65535", port.Error);
        var host = await cli.Run("serve", export.ModelDirectory, "--host", "example.com");
        Assert.Contains("error FT1002: --host must be an IP address", host.Error);

        var taken = await cli.Run("serve", export.ModelDirectory, "--port", _server.Address.Port.ToString());
        Assert.True(taken.ExitCode == 3, taken.Error);
        Assert.Contains($"error FT1003: cannot listen on 127.0.0.1:{_server.Address.Port}", taken.Error);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the server never got there");
            await Task.Delay(10);
        }
    }

    /// <summary>Keeps the model busy with a generation that blocks in its first token until released.</summary>
    private sealed class ModelHold : IDisposable
    {
        private readonly SemaphoreSlim _release = new(0);
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task _run;

        public ModelHold(InferenceModel model)
        {
            _run = model.RunAsync(model.PrepareChat([new("user", "hold")], new SamplingSettings(MaxTokens: 20)),
                _ =>
                {
                    _started.TrySetResult();
                    _release.Wait();
                }, CancellationToken.None);
        }

        public Task Started => _started.Task;

        public void Release() => _release.Release(100);

        public void Dispose()
        {
            Release();
            _run.Wait();
            _release.Dispose();
        }
    }

    [Fact]
    public async Task Sigterm_stops_a_running_serve_process_after_the_requests_in_flight()
    {
        // A process of its own, as a service manager runs it: SIGTERM stops it like a first Ctrl+C.
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
            { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "dotnet-finetune.dll"));
        foreach (var arg in new[] { "serve", export.ModelDirectory, "--port", port.ToString() }) info.ArgumentList.Add(arg);
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            var address = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2));
            Assert.Equal($"http://127.0.0.1:{port}/", address);
            using var http = new HttpClient();
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(address + "health")).StatusCode);

            Process.Start("kill", ["-TERM", process.Id.ToString()])!.WaitForExit();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, process.ExitCode);
            var error = await stderr;
            Assert.Contains("Terminating: stopping the server (requests in flight finish or are cancelled)", error);
            Assert.Contains("Stopping: finishing the requests in flight", error);
            Assert.DoesNotContain("checkpoint", error);
            await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(address + "health"));
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
