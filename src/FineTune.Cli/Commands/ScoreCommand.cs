using FineTune.Core;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Generation;

namespace FineTune.Cli.Commands;

/// <summary><c>score MODEL (--text | --file | --ids)</c>: the log-probability of each next token and the mean
/// NLL.</summary>
internal static class ScoreCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("score",
            "Log-probability of each next token of a text under a model, and the mean negative log-likelihood.");
        var model = new Argument<string>("model") { Description = "A model folder in Hugging Face layout " +
            "(config.json, safetensors, tokenizer files)." };
        var text = new Option<string?>("--text") { Description = "The text to score " +
            "(tokenized without special tokens)." };
        var file = new Option<string?>("--file") { Description = "A UTF-8 file whose content is scored." };
        var ids = new Option<string?>("--ids") { Description = "Token ids to score as they are, " +
            "comma-separated: 1,2,3." };
        var addSpecial = new Option<bool>("--add-special-tokens") { Description = "Put the tokenizer's BOS token " +
            "before the text, as transformers does when asked to." };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON." };
        command.Arguments.Add(model);
        var offline = OfflineOption.Create();
        var adapter = ModelInputs.AdapterOption();
        foreach (var option in new Option[] { text, file, ids, addSpecial, json, adapter, offline })
            command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            var given = new[] { (text, "--text"), (file, "--file"),
                (ids, "--ids") }.Where(o => parse.GetValue(o.Item1) is not null).Select(o => o.Item2).ToList();
            if (given.Count != 1)
                throw new FineTuneException(ModelInputs.ArgumentCode, given.Count == 0
                    ? "give what to score: --text TEXT, --file FILE or --ids 1,2,3"
                    : $"give only one of --text, --file and --ids (got {string.Join(" and ", given)})");

            var location = ModelInputs.Locate(parse, model, adapter, console, cancellationToken);
            var folder = location.ModelDirectory;
            var needsTokenizer = parse.GetValue(ids) is null;
            var tokenizer = ModelInputs.LoadTokenizer(folder, needsTokenizer, "to tokenize the text");
            using var loaded = ModelInputs.LoadModel(location);

            List<int> sequence;
            if (parse.GetValue(ids) is { } idText) sequence = ModelInputs.ParseIds(idText, loaded.Config.VocabSize);
            else
            {
                string content;
                if (parse.GetValue(file) is { } path)
                {
                    if (!File.Exists(path))
                        throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.ScoreFileNotFound,
                            "the file to score does not exist", path));
                    content = File.ReadAllText(path);
                }
                else content = parse.GetValue(text)!;
                sequence = [.. parse.GetValue(addSpecial) ? ModelInputs.SpecialPrefix(tokenizer!) : [],
                    .. tokenizer!.Encode(content)];
                ModelInputs.CheckVocabulary(sequence, loaded.Config.VocabSize, folder);
            }
            if (sequence.Count < 2)
                throw new FineTuneException(ModelInputs.ArgumentCode,
                    $"scoring needs at least two tokens (the first is only context), got {sequence.Count}; give a " +
                        $"longer text{(parse.GetValue(addSpecial) ? "" : " or --add-special-tokens")}");

            var logProbabilities = TokenScorer.NextTokenLogProbabilities(loaded, sequence);
            var meanNll = -logProbabilities.Average();
            string Piece(int id) => tokenizer?.Decode([id], skipSpecialTokens: false) ?? "";

            if (parse.GetValue(json))
            {
                var tokens = new JsonArray();
                for (var t = 0; t < sequence.Count; t++)
                    tokens.Add(new JsonObject
                    {
                        ["position"] = t,
                        ["id"] = sequence[t],
                        ["token"] = tokenizer is null ? null : Piece(sequence[t]),
                        ["logprob"] = t == 0 ? null : logProbabilities[t - 1],
                    });
                var result = new JsonObject
                {
                    ["model"] = folder,
                    ["ids"] = new JsonArray([.. sequence.Select(i => (JsonNode)i)]),
                    ["tokens"] = tokens,
                    ["scored_tokens"] = logProbabilities.Length,
                    ["mean_nll"] = meanNll,
                    ["perplexity"] = Math.Exp(meanNll),
                };
                console.Out.WriteLine(result.ToJsonString(JsonText.Indented));
                return Task.FromResult(ExitCodes.Ok);
            }

            console.Out.WriteLine($"{"pos",5} {"id",8} {"logprob",10}  token");
            for (var t = 0; t < sequence.Count; t++)
            {
                var score = t == 0 ? "-" : logProbabilities[t - 1].ToString("F4", CultureInfo.InvariantCulture);
                console.Out.WriteLine($"{t,5} {sequence[t],8} {score,10}  " +
                    $"{JsonSerializer.Serialize(Piece(sequence[t]), JsonText.Compact)}");
            }
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"mean NLL {meanNll:F4} nats over {logProbabilities.Length} predicted tokens (perplexity " +
                    $"{Math.Exp(meanNll):F2})"));
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }
}
