using System.CommandLine;
using System.Text;
using System.Text.Json;
using FineTune.Core;
using FineTune.Core.Diagnostics;

namespace FineTune.Cli.Commands;

/// <summary><c>codes</c>: the diagnostics catalogue, as text, as JSON, or as the README's error table.</summary>
internal static class CodesCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("codes", "List every error and warning code (FTxxxx) with its meaning.");
        var json = new Option<bool>("--json") { Description = "Write one JSON document." };
        var markdown = new Option<bool>("--markdown") { Description = "Write the Markdown table the README holds." };
        command.Options.Add(json);
        command.Options.Add(markdown);
        command.Validators.Add(result =>
        {
            if (result.GetValue(json) && result.GetValue(markdown))
                result.AddError("--json and --markdown exclude each other");
        });
        command.SetAction(parse =>
        {
            console.Out.Write(parse.GetValue(json) ? Json() : parse.GetValue(markdown) ? Markdown() : Text());
            return ExitCodes.Ok;
        });
        return command;
    }

    public static string Markdown()
    {
        var table = new StringBuilder("| Code | Meaning |\n|------|---------|\n");
        foreach (var code in DiagnosticCodes.All)
            table.Append($"| {code.Code} | {code.Meaning.Replace("|", "\\|", StringComparison.Ordinal)} |\n");
        return table.ToString();
    }

    private static string Json() =>
        JsonSerializer.Serialize(new
        {
            version = 1,
            codes = DiagnosticCodes.All.Select(c => new { code = c.Code, name = c.Name, meaning = c.Meaning }),
        }, JsonText.Indented) + "\n";

    private static string Text() =>
        string.Concat(DiagnosticCodes.All.Select(code => $"{code.Code}  {code.Meaning}\n"));
}
