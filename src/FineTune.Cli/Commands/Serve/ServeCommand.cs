using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using FineTune.Core.Diagnostics;
using FineTune.Inference;

namespace FineTune.Cli.Commands.Serve;

/// <summary><c>serve MODEL</c>: an OpenAI-compatible HTTP server for a model folder, an adapter or a pipeline's
/// export.</summary>
internal static class ServeCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, " +
            "/v1/completions, /v1/models, /health) until Ctrl+C.");
        var model = new Argument<string>("model") { Description = "A model folder or Hub id, a PEFT adapter folder, " +
            "or a pipeline YAML file whose export stage has run." };
        var adapter = ModelInputs.AdapterOption();
        var port = new Option<int>("--port") { Description = "The TCP port (0 picks a free one).",
            DefaultValueFactory = _ => 8000 };
        var host = new Option<string>("--host") { Description = "The address to listen on; other machines reach " +
            "the server only when this is not a loopback address.", DefaultValueFactory = _ => "127.0.0.1" };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on " +
            "/v1/ (default: the FINETUNE_API_KEY environment variable; none when unset)." };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait while one runs; more are " +
            "answered 429.", DefaultValueFactory = _ => 8 };
        var modelId = new Option<string?>("--model-id") { Description = "The model's name in the API (default: " +
            "the pipeline's or folder's name)." };
        command.Arguments.Add(model);
        var offline = OfflineOption.Create();
        foreach (var option in new Option[] { adapter, port, host, apiKey, queue, modelId, offline })
            command.Options.Add(option);
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            var options = new ServeOptions(parse.GetValue(host)!, parse.GetValue(port),
                parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("FINETUNE_API_KEY"),
                parse.GetValue(queue));
            Validate(options);
            using var inference = InferenceModel.Load(
                ModelInputs.Locate(parse, model, adapter, console, cancellationToken), parse.GetValue(modelId));
            await using var server = await Start(inference, options);
            console.Error.WriteLine($"Serving '{inference.ModelId}' at {server.Address}v1 (OpenAI API; Ctrl+C to " +
                "stop).");
            console.Out.WriteLine(server.Address);
            try { await Task.Delay(Timeout.Infinite, cancellationToken); }
            catch (OperationCanceledException) { }
            console.Error.WriteLine("Stopping: finishing the requests in flight (at most 10 s)...");
            await server.StopAsync(CancellationToken.None);
            return ExitCodes.Ok;
        });
        return command;
    }

    private static void Validate(ServeOptions options)
    {
        if (options.Port is < 0 or > 65535)
            throw new FineTuneException(DiagnosticCodes.InvalidServeOptions,
                $"--port must be between 0 and 65535, not {options.Port}");
        if (options.QueueLength < 0)
            throw new FineTuneException(DiagnosticCodes.InvalidServeOptions,
                $"--queue must be 0 or more, not {options.QueueLength}");
        if (options.Host != "localhost" && !IPAddress.TryParse(options.Host, out _))
            throw new FineTuneException(DiagnosticCodes.InvalidServeOptions,
                $"--host must be an IP address such as 127.0.0.1 (or 0.0.0.0 for every interface), not " +
                $"'{options.Host}'");
    }

    private static async Task<OpenAiServer> Start(InferenceModel model, ServeOptions options)
    {
        try { return await OpenAiServer.StartAsync(model, options); }
        catch (IOException e) // Kestrel's "Failed to bind to address ...: address already in use."
        {
            throw new FineTuneException(DiagnosticCodes.ServeAddressUnavailable,
                $"cannot listen on {options.Host}:{options.Port}: {e.Message}", ExitCodes.StageFailed);
        }
        catch (SocketException e)
        {
            throw new FineTuneException(DiagnosticCodes.ServeAddressUnavailable,
                $"cannot listen on {options.Host}:{options.Port}: {e.Message}", ExitCodes.StageFailed);
        }
    }
}
