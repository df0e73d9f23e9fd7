using System.CommandLine;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Torch.Chat;
using FineTune.Torch.Generation;

namespace FineTune.Cli.Commands;

/// <summary><c>chat MODEL</c>: answers prompts with an exported model (a folder, or a pipeline whose export
/// ran).</summary>
internal static class ChatCommand
{
    public static Command Create(IServiceProvider services, CliConsole console)
    {
        var command = new Command("chat",
            "Chat with a model folder (Hugging Face layout), or with the export of a pipeline file.");
        var model = new Argument<string>("model") { Description = "A model folder, or a pipeline YAML file whose " +
            "export stage has run." };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Answer this one prompt and exit (the " +
            "answer goes to stdout)." };
        var maxNewTokens = new Option<int?>("--max-new-tokens") { Description = "Most tokens per answer (default: " +
            "the model's generation_config.json)." };
        var temperature = new Option<double>("--temperature") { Description = "0 for greedy decoding (default), " +
            "above 0 to sample.", DefaultValueFactory = _ => 0 };
        var system = new Option<string?>("--system") { Description = "A system prompt before the conversation." };
        command.Arguments.Add(model);
        var offline = OfflineOption.Create();
        foreach (var option in new Option[] { prompt, maxNewTokens, temperature, system, offline })
            command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            var directory = ResolveModelDirectory(parse.GetValue(model)!);
            using var session = ChatSession.Open(directory);
            var options = new GenerationOptions(
                MaxNewTokens: parse.GetValue(maxNewTokens) ?? session.DefaultMaxNewTokens,
                Temperature: parse.GetValue(temperature),
                Seed: 0);
            var history = new List<Core.Data.ChatMessage>();
            if (parse.GetValue(system) is { Length: > 0 } systemPrompt) history.Add(new("system", systemPrompt));

            if (parse.GetValue(prompt) is { } single)
            {
                history.Add(new("user", single));
                var answer = session.Reply(history, options, cancellationToken: cancellationToken);
                console.Out.WriteLine(answer.Text);
                return Task.FromResult(ExitCodes.Ok);
            }

            console.Error.WriteLine($"Chatting with {directory} (empty line or Ctrl+D to quit).");
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

    /// <summary>A folder or Hub model id (as score and generate take them), or the committed export of a pipeline
    /// file.</summary>
    private static string ResolveModelDirectory(string argument)
    {
        var isPipeline = argument.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase)
            || argument.EndsWith(".yml", StringComparison.OrdinalIgnoreCase);
        if (!isPipeline) return ModelInputs.Folder(argument);
        if (!File.Exists(argument)) throw new FineTuneException(DiagnosticCodes.ChatTargetNotFound,
            $"pipeline file '{argument}' does not exist");
        var pipeline = PipelineLoader.LoadOrThrow(argument);
        var locked = LockFile.Read(LockFile.PathFor(pipeline.FilePath));
        if (!locked.Stages.TryGetValue("export", out var export))
            throw new FineTuneException(DiagnosticCodes.ExportNotAvailable,
                $"{argument}: the export stage has not run yet; run 'dotnet finetune run {argument}' first");
        var directory = new StageStore(pipeline.StorePath).OutputDirectory("export", export.Key);
        return Directory.Exists(directory)
            ? directory
            : throw new FineTuneException(DiagnosticCodes.ExportNotAvailable,
                $"{argument}: the export recorded in the lock file is not in the store (was it garbage-collected?); " +
                $"run the pipeline again");
    }
}
