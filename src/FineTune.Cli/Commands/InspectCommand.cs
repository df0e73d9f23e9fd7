using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Cli.Output;
using FineTune.Core;
using FineTune.Core.Diagnostics;
using FineTune.Core.Stages;
using FineTune.Core.Tokenization;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>inspect PIPELINE</c>: the training examples exactly as the model will see them, every token shown and the
/// trained ones highlighted, after running (or reusing) the stages up to tokenize.
/// </summary>
internal static class InspectCommand
{
    private const string Green = "\u001b[42;30m", Reset = "\u001b[0m";
    private const string TrainedOpen = "[[", TrainedClose = "]]";

    public static Command Create(IServiceProvider services, CliConsole console)
    {
        var command = new Command("inspect",
            "Show tokenized training examples token by token, with the trained tokens highlighted.");
        var file = PipelineOptions.File();
        var set = PipelineOptions.Set();
        var json = PipelineOptions.Json();
        var examples = new Option<int>("--examples", "-n") { Description = "How many examples to show (default 3).",
            DefaultValueFactory = _ => 3 };
        var split = new Option<string>("--split") { Description = "train or validation.",
            DefaultValueFactory = _ => "train" };
        split.AcceptOnlyFromAmong("train", "validation");
        command.Arguments.Add(file);
        foreach (var option in new Option[] { set, examples, split, json }) command.Options.Add(option);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var pipeline = PipelineOptions.Load(console, parse.GetValue(file)!, parse.GetValue(set));
            if (pipeline is null) return ExitCodes.InvalidInput;
            var runner = services.GetRequiredService<PipelineRunner>();
            var observer = new ConsoleObserver(console.Error, console.Error, console.Interactive);
            var outcomes = await runner.RunAsync(pipeline, new RunOptions { Until = "tokenize" }, observer,
                cancellationToken);
            var tokenized = outcomes.Single(o => o.Stage == "tokenize").OutputDirectory!;

            var tokenizer = ChatTokenizer.LoadFolder(Path.Combine(tokenized, "tokenizer"));
            var dataset = TokenizedDataset.Read(Path.Combine(tokenized, parse.GetValue(split) + ".tokens"));
            var count = Math.Min(parse.GetValue(examples), dataset.Count);
            var colour = !Console.IsOutputRedirected && ReferenceEquals(console.Out, Console.Out)
                && Environment.GetEnvironmentVariable("NO_COLOR") is null;

            var asJson = parse.GetValue(json);
            var all = new JsonArray();
            if (!asJson && !colour)
                console.Out.WriteLine($"Trained tokens are between {TrainedOpen} and {TrainedClose}; each token is " +
                    $"followed by its id.");
            for (var example = 0; example < count; example++)
            {
                var tokens = Pieces(tokenizer, dataset.Ids(example).ToArray());
                var labels = dataset.Labels(example);
                var trained = 0;
                foreach (var label in labels) if (label != TokenizedDataset.IgnoreLabel) trained++;
                if (asJson)
                {
                    var items = new JsonArray();
                    for (var t = 0; t < tokens.Count; t++)
                        items.Add(new JsonObject { ["id"] = tokens[t].Id, ["piece"] = tokens[t].Piece,
                            ["label"] = labels[t], ["trained"] = labels[t] != TokenizedDataset.IgnoreLabel });
                    all.Add(new JsonObject { ["example"] = example, ["length"] = tokens.Count, ["trained"] = trained,
                        ["tokens"] = items });
                    continue;
                }
                console.Out.WriteLine($"--- example {example}: {tokens.Count} tokens, {trained} trained");
                console.Out.WriteLine(Highlight(tokens, labels, colour));
            }
            if (asJson) console.Out.WriteLine(new JsonObject { ["split"] = parse.GetValue(split),
                ["examples"] = all }.ToJsonString(JsonText.Indented));
            return ExitCodes.Ok;
        });
        return command;
    }

    private sealed record TokenPiece(int Id, string Piece);

    /// <summary>
    /// Each token's text. A byte-level token may hold part of a character; the streaming decoder gives the character
    /// to the token that completes it and an empty piece to the ones before.
    /// </summary>
    private static List<TokenPiece> Pieces(ChatTokenizer tokenizer, int[] ids)
    {
        var decoder = tokenizer.Tokenizer.CreateStreamingDecoder(skipSpecialTokens: false);
        return [.. ids.Select(id => new TokenPiece(id, decoder.Push(id)))];
    }

    private static string Highlight(List<TokenPiece> tokens, ReadOnlySpan<int> labels, bool colour)
    {
        var text = new StringBuilder();
        var inTrained = false;
        for (var t = 0; t < tokens.Count; t++)
        {
            var isTrained = labels[t] != TokenizedDataset.IgnoreLabel;
            if (isTrained != inTrained)
            {
                text.Append(colour ? (isTrained ? Green : Reset) : (isTrained ? TrainedOpen : TrainedClose));
                inTrained = isTrained;
            }
            text.Append(Visible(tokens[t].Piece)).Append('(').Append(tokens[t].Id).Append(')');
            if (t + 1 < tokens.Count) text.Append(' ');
        }
        if (inTrained) text.Append(colour ? Reset : TrainedClose);
        return text.ToString();
    }

    /// <summary>Control characters as escapes, so a token that is a newline or a tab can be seen.</summary>
    private static string Visible(string piece) => piece.Length == 0 ? "…"
        : JsonSerializer.Serialize(piece, JsonText.Indented)[1..^1];
}
