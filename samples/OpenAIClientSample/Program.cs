// Talks to `dotnet finetune serve` with the official OpenAI .NET client, as it would to api.openai.com.
// First: dotnet finetune serve pipelines/huanhuan-cpu.yaml --port 8000   Then:
//   dotnet run --project samples/OpenAIClientSample -- http://127.0.0.1:8000/v1 huanhuan-cpu 你是谁？
using System.ClientModel;
using OpenAI;
using OpenAI.Chat;

var endpoint = new Uri(args.Length > 0 ? args[0] : "http://127.0.0.1:8000/v1");
var model = args.Length > 1 ? args[1] : "huanhuan-cpu";
var prompt = args.Length > 2 ? args[2] : "你是谁？";
// serve --api-key KEY checks it; without one any key is accepted.
var key = Environment.GetEnvironmentVariable("FINETUNE_API_KEY") ?? "unused";

var client = new ChatClient(model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = endpoint });

ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage(prompt)]);
Console.WriteLine(completion.Content[0].Text);
Console.Error.WriteLine($"[{completion.FinishReason}, {completion.Usage.InputTokenCount} prompt tokens, " +
    $"{completion.Usage.OutputTokenCount} answer tokens]");

var options = new ChatCompletionOptions { Temperature = 0.7f, TopP = 0.9f, MaxOutputTokenCount = 64 };
await foreach (var update in client.CompleteChatStreamingAsync(
    [new UserChatMessage(prompt), new AssistantChatMessage(completion.Content[0].Text),
     new UserChatMessage("皇上驾到！")], options))
    foreach (var part in update.ContentUpdate) Console.Write(part.Text);
Console.WriteLine();
