using FineTune.Torch.Chat;
using FineTune.Torch.Generation;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using CoreChatMessage = FineTune.Core.Data.ChatMessage;

namespace FineTune.Inference.Tests;

public sealed class FineTunedChatClientTests(TinyExport export) : IClassFixture<TinyExport>
{
    private static readonly string[] Prompts = ["Hello there", "你是谁？", "Tell me a story", "2 + 2 =", "Why?",
        "Good morning, how are you today"];

    /// <summary>What <c>dotnet finetune chat MODEL --prompt P</c> prints: ChatSession's greedy reply.</summary>
    private string ChatCommandAnswer(string prompt, string? system = null, int? maxNewTokens = null)
    {
        using var session = ChatSession.Open(export.ModelDirectory);
        var history = new List<CoreChatMessage>();
        if (system is not null) history.Add(new("system", system));
        history.Add(new("user", prompt));
        return session.Reply(history, new GenerationOptions(MaxNewTokens: maxNewTokens ?? session.DefaultMaxNewTokens))
            .Text;
    }

    [Fact]
    public async Task Greedy_answers_equal_the_chat_commands_with_usage_and_finish_reason()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        var response = await client.GetResponseAsync(
            [new ChatMessage(ChatRole.System, "You are terse."), new ChatMessage(ChatRole.User, "Hello there")]);

        Assert.Equal(ChatCommandAnswer("Hello there", system: "You are terse."), response.Text);
        Assert.NotEmpty(response.Text);
        using var session = ChatSession.Open(export.ModelDirectory);
        var promptIds = session.Tokenizer.EncodeConversation(
            [new("system", "You are terse."), new("user", "Hello there")], addGenerationPrompt: true);
        Assert.Equal(promptIds.Count, response.Usage!.InputTokenCount);
        var generated = TextGenerator.GenerateIds(session.Model, promptIds,
            new GenerationOptions(TinyExport.MaxNewTokens, StopTokenIds: session.Tokenizer.StopTokenIds));
        Assert.Equal(generated.Count, response.Usage.OutputTokenCount);
        Assert.Equal(promptIds.Count + generated.Count, response.Usage.TotalTokenCount);
        var stopped = session.Tokenizer.StopTokenIds.Contains(generated[^1]);
        Assert.Equal(stopped ? ChatFinishReason.Stop : ChatFinishReason.Length, response.FinishReason);
        Assert.Equal("model", response.ModelId);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
    }

    [Fact]
    public async Task Streaming_pieces_concatenate_to_the_full_answer_and_the_last_update_has_usage()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        var full = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "你是谁？")]);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "你是谁？")]))
            updates.Add(update);

        Assert.True(updates.Count > 2, $"expected several pieces, got {updates.Count}");
        Assert.Equal(full.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(full.FinishReason, updates[^1].FinishReason);
        var usage = updates[^1].Contents.OfType<UsageContent>().Single().Details;
        Assert.Equal(full.Usage!.OutputTokenCount, usage.OutputTokenCount);
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        // The updates assemble into the same response (the abstractions' own helper).
        Assert.Equal(full.Text, updates.ToChatResponse().Text);
    }

    [Fact]
    public async Task Cancelling_mid_stream_stops_the_generation()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        var model = client.Model;
        var request = model.PrepareChat([new("user", "Tell me a story")], new SamplingSettings(MaxTokens: 100));
        using var cancellation = new CancellationTokenSource();
        var pieces = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => model.RunAsync(request, _ =>
        {
            if (++pieces == 3) cancellation.Cancel();
        }, cancellation.Token));
        Assert.Equal(3, pieces); // the step after the cancellation never ran

        // A consumer that stops reading the stream also stops it: the model is free when the loop has ended.
        var options = new ChatOptions { MaxOutputTokens = 100 };
        await foreach (var _ in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Hi")], options))
            break;
        Assert.Equal(0, model.Pending);

        using var cancelled = new CancellationTokenSource();
        var received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Hi")], options,
                cancelled.Token))
                if (++received == 2) await cancelled.CancelAsync();
        });
        Assert.Equal(2, received);
        Assert.Equal(0, model.Pending);
        // and the client still answers
        Assert.Equal(ChatCommandAnswer("Hello there"),
            (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello there")])).Text);
    }

    [Fact]
    public async Task Concurrent_calls_all_complete_with_their_own_answers()
    {
        var expected = Prompts.ToDictionary(p => p, p => ChatCommandAnswer(p));
        Assert.True(expected.Values.Distinct().Count() > 1, "the prompts should get different answers");
        using var client = FineTunedChatClient.Open(export.ModelDirectory);

        var calls = Prompts.Concat(Prompts).Select(async (prompt, i) =>
        {
            await Task.Yield();
            if (i % 2 == 0)
                return (prompt, (await client.GetResponseAsync([new ChatMessage(ChatRole.User, prompt)])).Text);
            var text = "";
            await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, prompt)]))
                text += update.Text;
            return (prompt, text);
        }).ToList();
        foreach (var (prompt, text) in await Task.WhenAll(calls)) Assert.Equal(expected[prompt], text);
    }

    [Fact]
    public async Task A_stop_sequence_cuts_the_answer_before_it_in_both_modes()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        var full = (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Tell me a story")])).Text;
        Assert.True(full.Length >= 6, $"answer too short for this test: '{full}'");
        var stop = full.Substring(full.Length / 2, 3);
        var expected = full[..full.IndexOf(stop, StringComparison.Ordinal)];

        var options = new ChatOptions { StopSequences = [stop, "\u0001never"] };
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Tell me a story")], options);
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);

        var streamed = "";
        ChatFinishReason? finish = null;
        await foreach (var update in client.GetStreamingResponseAsync(
            [new ChatMessage(ChatRole.User, "Tell me a story")], options))
        {
            streamed += update.Text;
            finish ??= update.FinishReason;
        }
        Assert.Equal(expected, streamed);
        Assert.Equal(ChatFinishReason.Stop, finish);
    }

    [Fact]
    public async Task Max_output_tokens_and_seeded_sampling_apply()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        var shortAnswer = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Tell me a story")],
            new ChatOptions { MaxOutputTokens = 3 });
        Assert.Equal(3, shortAnswer.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, shortAnswer.FinishReason);
        Assert.Equal(ChatCommandAnswer("Tell me a story", maxNewTokens: 3), shortAnswer.Text);

        var sampled = new ChatOptions { Temperature = 1.5f, TopP = 0.9f, Seed = 42, MaxOutputTokens = 10 };
        var a = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], sampled);
        var b = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")], sampled);
        Assert.Equal(a.Text, b.Text);
        var others = new List<string>();
        for (var seed = 1; seed <= 4; seed++)
            others.Add((await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")],
                new ChatOptions { Temperature = 1.5f, Seed = seed, MaxOutputTokens = 10 })).Text);
        Assert.True(others.Distinct().Count() > 1, "different seeds should sample different answers");
    }

    [Fact]
    public async Task A_tiny_top_p_keeps_only_the_most_likely_token_however_hot_the_sampling()
    {
        // Nucleus sampling keeps the smallest set of tokens whose probabilities reach top_p: with top_p near 0 that is
        // the single most likely token, so any seed and temperature give the greedy answer; without it they do not.
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        ChatMessage[] hi = [new(ChatRole.User, "Hi")];
        var greedy = (await client.GetResponseAsync(hi, new ChatOptions { Temperature = 0, MaxOutputTokens = 10 })).Text;
        var nucleus = new List<string>();
        var unrestricted = new List<string>();
        for (var seed = 1; seed <= 4; seed++)
        {
            nucleus.Add((await client.GetResponseAsync(hi,
                new ChatOptions { Temperature = 1.5f, TopP = 1e-6f, Seed = seed, MaxOutputTokens = 10 })).Text);
            unrestricted.Add((await client.GetResponseAsync(hi,
                new ChatOptions { Temperature = 1.5f, Seed = seed, MaxOutputTokens = 10 })).Text);
        }
        Assert.All(nucleus, answer => Assert.Equal(greedy, answer));
        Assert.Contains(unrestricted, answer => answer != greedy);
    }

    [Fact]
    public async Task Out_of_range_options_and_oversize_requests_are_refused_before_anything_runs()
    {
        using var client = FineTunedChatClient.Open(export.ModelDirectory);
        ChatMessage[] hi = [new(ChatRole.User, "Hi")];
        var temperature = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(hi, new ChatOptions { Temperature = 2.5f }));
        Assert.Equal("temperature", temperature.ParamName);
        var topP = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(hi, new ChatOptions { TopP = 0 }));
        Assert.Equal("top_p", topP.ParamName);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            client.GetResponseAsync(hi, new ChatOptions { MaxOutputTokens = 0 }));

        var tooMany = await Assert.ThrowsAsync<ArgumentException>(() =>
            client.GetResponseAsync(hi, new ChatOptions { MaxOutputTokens = 500 }));
        Assert.Equal("max_tokens", tooMany.ParamName);
        Assert.Contains("maximum context length is 128 tokens", tooMany.Message);
        var longPrompt = await Assert.ThrowsAsync<ArgumentException>(() =>
            client.GetResponseAsync([new ChatMessage(ChatRole.User, string.Concat(Enumerable.Repeat("word ", 200)))]));
        Assert.Equal("messages", longPrompt.ParamName);
    }

    [Fact]
    public async Task A_peft_adapter_applied_unmerged_answers_as_the_merged_model()
    {
        using var merged = FineTunedChatClient.Open(export.MergedDirectory);
        using var withAdapter = FineTunedChatClient.Open(export.ModelDirectory,
            new FineTunedChatClientOptions { AdapterPath = export.AdapterDirectory, ModelId = "tuned" });
        using var adapterAlone = FineTunedChatClient.Open(export.AdapterDirectory);
        foreach (var prompt in Prompts.Take(3))
        {
            ChatMessage[] messages = [new(ChatRole.User, prompt)];
            var expected = (await merged.GetResponseAsync(messages)).Text;
            Assert.Equal(expected, (await withAdapter.GetResponseAsync(messages)).Text);
            Assert.Equal(expected, (await adapterAlone.GetResponseAsync(messages)).Text);
        }
        Assert.NotEqual(ChatCommandAnswer(Prompts[0]),
            (await withAdapter.GetResponseAsync([new ChatMessage(ChatRole.User, Prompts[0])])).Text);
        Assert.Equal("tuned", withAdapter.Metadata.DefaultModelId);
    }

    [Fact]
    public async Task The_container_gives_the_client_as_IChatClient()
    {
        var services = new ServiceCollection();
        services.AddFineTunedChatClient(export.ModelDirectory, o => o.ModelId = "huanhuan").UseLogging();
        services.AddLogging();
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IChatClient>();
        Assert.Equal("huanhuan", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.IsType<FineTunedChatClient>(client.GetService<FineTunedChatClient>());
        var answer = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello there")]);
        Assert.Equal(ChatCommandAnswer("Hello there"), answer.Text);
    }
}
