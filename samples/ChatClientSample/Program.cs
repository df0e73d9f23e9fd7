// Chats with the huanhuan CPU job's export through Microsoft.Extensions.AI's IChatClient.
// First: dotnet finetune run pipelines/huanhuan-cpu.yaml   Then, from the repository root:
//   dotnet run --project samples/ChatClientSample -- pipelines/huanhuan-cpu.yaml 你是谁？
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var model = args.Length > 0 ? args[0] : "pipelines/huanhuan-cpu.yaml";
var prompt = args.Length > 1 ? args[1] : "你是谁？";

var builder = Host.CreateApplicationBuilder();
builder.Services.AddFineTunedChatClient(model);
using var host = builder.Build();
var client = host.Services.GetRequiredService<IChatClient>();

// One answer, whole, with its token usage.
var response = await client.GetResponseAsync(prompt);
Console.WriteLine(response.Text);
Console.Error.WriteLine($"[{response.FinishReason}, {response.Usage?.InputTokenCount} prompt tokens, " +
    $"{response.Usage?.OutputTokenCount} answer tokens]");

// A conversation, streamed as the model writes it.
List<ChatMessage> history =
[
    new(ChatRole.User, prompt),
    new(ChatRole.Assistant, response.Text),
    new(ChatRole.User, "皇上驾到！"),
];
var options = new ChatOptions { Temperature = 0.7f, TopP = 0.9f, Seed = 42, MaxOutputTokens = 64 };
await foreach (var update in client.GetStreamingResponseAsync(history, options))
    Console.Write(update.Text);
Console.WriteLine();
