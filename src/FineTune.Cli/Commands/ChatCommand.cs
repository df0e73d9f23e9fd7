using System.CommandLine;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;
using FineTune.Torch.Lora;

namespace FineTune.Cli.Commands;

/// <summary><c>chat MODEL</c>: answers prompts with an exported model (a folder, or a pipeline whose export
/// ran).</summary>
internal static class ChatCommand
{
    public static Command Create(IServiceProvider services, CliConsole console)
    {
        var command = new Command("chat",
            "Chat with a model folder (Hugging Face layout), or with the export of a pipeline file.");
        var model = new Argument<string>("model") { Description = "A model folder or Hub id, a PEFT adapter " +
            "folder, or a pipeline YAML file whose export stage has run." };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Answer this one prompt and exit (the " +
            "answer goes to stdout)." };
        var maxNewTokens = new Option<int?>("--max-new-tokens") { Description = "Most tokens per answer (default: " +
            "the model's generation_config.json)." };
        var temperature = new Option<double>("--temperature") { Description = "0 for greedy decoding (default), " +
            "above 0 to sample.", DefaultValueFactory = _ => 0 };
        var system = new Option<string?>("--system") { Description = "A system prompt before the conversation." };
        command.Arguments.Add(model);
        var offline = OfflineOption.Create();
        var adapter = ModelInputs.AdapterOption();
        foreach (var option in new Option[] { prompt, maxNewTokens, temperature, system, adapter, offline })
            command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            var location = ModelInputs.Locate(parse, model, adapter, console, cancellationToken);
            var directory = location.ModelDirectory;
            using var session = ChatSession.Open(directory);
            // Applied unmerged, as PEFT's PeftModel.from_pretrained does: the base weights stay as they are.
            if (location.AdapterDirectory is { } adapterDirectory) LoraAdapter.LoadAdapter(session.Model,
                adapterDirectory);
            var options = new GenerationOptions(
                MaxNewTokens: parse.GetValue(maxNewTokens) ?? session.DefaultMaxNewTokens,
                Temperature: parse.GetValue(temperature),
                Seed: 0);
            var history = new List<Core.Data.ChatMessage>();
            if (parse.GetValue(system) is { Length: > 0 } systemPrompt) history.Add(new("system", systemPrompt));

            if (parse.GetValue(prompt) is { } single)
            {
                history.Add(new("user", single));
                // streamed as it comes, like the interactive mode: the pieces concatenate to the answer's text
                session.Reply(history, options, text => console.Out.Write(text), cancellationToken);
                console.Out.WriteLine();
                return Task.FromResult(ExitCodes.Ok);
            }

            var adapterNote = location.AdapterDirectory is { } a ? $" + adapter {a}" : "";
            console.Error.WriteLine($"Chatting with {directory}{adapterNote} (empty line or Ctrl+D to quit).");
            while (!cancellationToken.IsCancellationRequested)
            {
                console.Error.Write("> ");
                var line = Console.In.ReadLine();
                if (string.IsNullOrWhiteSpace(line)) break;
                history.Add(new("user", line));
                var answer = session.Reply(history, options, text => console.Out.Write(text), cancellationToken);
                console.Out.WriteLine();
                history.Add(new("assistant", answer.Text));
            }
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }
}
