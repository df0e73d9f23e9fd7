using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Core.Diagnostics;
using FineTune.Core.Hub;
using FineTune.Inference;
using FineTune.Core.Tokenization;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>tokenize TOKENIZER --file INPUT.jsonl</c>: what the tokenizer and its chat template make of each input line,
/// as transformers would: <c>{"text"}</c> lines are encoded (special tokens added unless the line says
/// <c>"add_special_tokens": false</c>), <c>{"messages"}</c> lines are rendered with the chat template and the text
/// encoded without adding special tokens, as <c>apply_chat_template(tokenize=True)</c> does.
/// </summary>
internal static class TokenizeCommand
{
    private const string InputCode = DiagnosticCodes.InvalidTokenizeInput;

    public static Command Create(CliConsole console)
    {
        var command = new Command("tokenize",
            "Render and tokenize JSON lines with a tokenizer and its chat template, as Hugging Face transformers " +
            "does.");
        var tokenizerArgument = new Argument<string>("tokenizer") { Description = "A folder with tokenizer.json (and " +
            "tokenizer_config.json), or a Hub model id." };
        var file = new Option<FileInfo>("--file") { Description = "JSON lines: {\"text\": ..., " +
            "\"add_special_tokens\": bool} or {\"messages\": [...], \"add_generation_prompt\": bool, \"tools\": " +
            "[...], \"kwargs\": {...}}.", Required = true };
        var template = new Option<string?>("--chat-template") { Description = "A built-in template name or a .jinja " +
            "file instead of the tokenizer's own." };
        var json = new Option<bool>("--json") { Description = "One JSON object per input line: {\"text\", \"ids\"}." };
        command.Arguments.Add(tokenizerArgument);
        foreach (var option in new Option[] { file, template, json }) command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            // A Hub id: its tokenizer files only, not the weights.
            var folder = ModelLocator.Folder(parse.GetValue(tokenizerArgument)!, ModelInputs.DownloadProgress(console),
                cancellationToken, ModelSource.TokenizerFilePatterns);
            var tokenizer = ChatTokenizer.LoadFolder(folder, parse.GetValue(template), Directory.GetCurrentDirectory());
            var input = parse.GetValue(file)!;
            if (!input.Exists) throw new FineTuneException(Diagnostic.Error(InputCode, "the input file does not exist",
                input.FullName));
            var asJson = parse.GetValue(json);
            var lineNumber = 0;
            foreach (var line in File.ReadLines(input.FullName))
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                var (text, ids) = TokenizeLine(tokenizer, line, input.FullName, lineNumber);
                if (asJson)
                {
                    console.Out.WriteLine(new JsonObject
                    {
                        ["line"] = lineNumber,
                        ["text"] = text,
                        ["ids"] = new JsonArray([.. ids.Select(id => (JsonNode)id)]),
                    }.ToJsonString(JsonText.Compact));
                    continue;
                }
                console.Out.WriteLine($"line {lineNumber}: {ids.Count} tokens");
                console.Out.WriteLine(text);
                console.Out.WriteLine(string.Join(" ", ids));
                console.Out.WriteLine(string.Join("|",
                    ids.Select(id => tokenizer.Decode([id], skipSpecialTokens: false))));
                console.Out.WriteLine();
            }
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    private static (string Text, IReadOnlyList<int> Ids) TokenizeLine(ChatTokenizer tokenizer, string line, string path,
        int lineNumber)
    {
        JsonObject request;
        try { request = JsonNode.Parse(line) as JsonObject ?? throw new JsonException("not a JSON object"); }
        catch (JsonException e) { throw new FineTuneException(Diagnostic.Error(InputCode,
            $"not a JSON object: {e.Message}", path, lineNumber)); }

        if (request["text"] is JsonValue textValue && textValue.TryGetValue<string>(out var text))
        {
            // transformers' default for tokenizer(text)
            var addSpecial = request["add_special_tokens"]?.GetValue<bool>() ?? true;
            return (text, tokenizer.Encode(text, addSpecial).Ids);
        }
        if (request["messages"] is JsonArray messages)
        {
            var addGenerationPrompt = request["add_generation_prompt"]?.GetValue<bool>() ?? false;
            var rendered = tokenizer.Template.Render(messages, addGenerationPrompt,
                request["tools"] as JsonArray, request["kwargs"] as JsonObject, tokenizer.BosToken, tokenizer.EosToken);
            return (rendered, tokenizer.Encode(rendered, addSpecialTokens: false).Ids);
        }
        throw new FineTuneException(Diagnostic.Error(InputCode,
            "each line needs \"text\" (a string) or \"messages\" (a list of {role, content})", path, lineNumber));
    }
}
