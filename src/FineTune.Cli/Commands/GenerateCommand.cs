using FineTune.Core;
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Generation;

namespace FineTune.Cli.Commands;

/// <summary><c>generate MODEL --prompt TEXT</c>: continues a raw prompt (no chat template).</summary>
internal static class GenerateCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("generate",
            "Continue a raw text prompt with a model (no chat template); the continuation goes to stdout.");
        var model = new Argument<string>("model") { Description = "A model folder in Hugging Face layout " +
            "(config.json, safetensors, tokenizer files)." };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The text to continue, tokenized without " +
            "special tokens." };
        var ids = new Option<string?>("--ids") { Description = "The prompt as token ids instead, comma-separated: " +
            "1,2,3." };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate.",
            DefaultValueFactory = _ => 32 };
        var temperature = new Option<double>("--temperature") { Description = "0 for greedy decoding (default), " +
            "above 0 to sample.", DefaultValueFactory = _ => 0 };
        var seed = new Option<long>("--seed") { Description = "Seed of the sampler when --temperature is above 0.",
            DefaultValueFactory = _ => 0 };
        var addSpecial = new Option<bool>("--add-special-tokens") { Description = "Put the tokenizer's BOS token " +
            "before the prompt." };
        var json = new Option<bool>("--json") { Description = "Print the prompt ids, generated ids, text and finish " +
            "reason as JSON." };
        command.Arguments.Add(model);
        var offline = OfflineOption.Create();
        var adapter = ModelInputs.AdapterOption();
        foreach (var option in new Option[]
            { prompt, ids, maxNewTokens, temperature, seed, addSpecial, json, adapter, offline })
            command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            if ((parse.GetValue(prompt) is null) == (parse.GetValue(ids) is null))
                throw new FineTuneException(ModelInputs.ArgumentCode,
                    "give the prompt either as --prompt TEXT or as --ids 1,2,3 (exactly one of them)");
            if (parse.GetValue(maxNewTokens) < 1)
                throw new FineTuneException(ModelInputs.ArgumentCode, "--max-new-tokens must be at least 1");
            if (parse.GetValue(temperature) is var t && (t < 0 || double.IsNaN(t)))
                throw new FineTuneException(ModelInputs.ArgumentCode, "--temperature must be 0 (greedy) or above");

            var location = ModelInputs.Locate(parse, model, adapter, console, cancellationToken);
            var folder = location.ModelDirectory;
            var tokenizer = ModelInputs.LoadTokenizer(folder, required: parse.GetValue(prompt) is not null,
                "to tokenize the prompt");
            using var loaded = ModelInputs.LoadModel(location);

            List<int> promptIds;
            if (parse.GetValue(ids) is { } idText) promptIds = ModelInputs.ParseIds(idText, loaded.Config.VocabSize);
            else
            {
                promptIds = [.. parse.GetValue(addSpecial) ? ModelInputs.SpecialPrefix(tokenizer!) : [],
                    .. tokenizer!.Encode(parse.GetValue(prompt)!)];
                ModelInputs.CheckVocabulary(promptIds, loaded.Config.VocabSize, folder);
            }
            if (promptIds.Count == 0)
                throw new FineTuneException(ModelInputs.ArgumentCode,
                    "the prompt is empty; give some text (or --add-special-tokens to start from the BOS token)");

            // A raw continuation ends at end-of-sequence: config.json's eos_token_id and the tokenizer's EOS.
            var stops = new List<int>();
            if (loaded.Config.EosTokenId is { } eos) stops.Add(eos);
            if (tokenizer is FineTune.Core.Tokenization.ChatTokenizer { EosTokenId: { } tokenizerEos }
                && !stops.Contains(tokenizerEos)) stops.Add(tokenizerEos);

            var options = new GenerationOptions(parse.GetValue(maxNewTokens), parse.GetValue(temperature),
                Seed: parse.GetValue(seed), StopTokenIds: stops);
            var generated = TextGenerator.GenerateIds(loaded, promptIds, options, cancellationToken: cancellationToken);
            var finish = generated.Count > 0 && stops.Contains(generated[^1]) ? "stop" : "length";
            var text = tokenizer?.Decode(generated.Where(id => !stops.Contains(id)).ToList());

            if (parse.GetValue(json))
            {
                var result = new JsonObject
                {
                    ["model"] = folder,
                    ["prompt_ids"] = new JsonArray([.. promptIds.Select(i => (JsonNode)i)]),
                    ["ids"] = new JsonArray([.. generated.Select(i => (JsonNode)i)]),
                    ["text"] = text,
                    ["finish_reason"] = finish,
                };
                console.Out.WriteLine(result.ToJsonString(JsonText.Indented));
            }
            else console.Out.WriteLine(text ?? string.Join(",", generated));
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }
}
