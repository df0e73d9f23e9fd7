using FineTune.Core;
using System.CommandLine;
using System.Text.Json;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;

namespace FineTune.Cli.Commands;

/// <summary><c>validate</c>: every problem in a pipeline file at once, in the canonical file(line,col) form.</summary>
internal static class ValidateCommand
{
    public static Command Create(IServiceProvider services, CliConsole console)
    {
        var command = new Command("validate",
            "Check a pipeline file without running it: syntax, keys, types, values and contradictions; with --data, " +
            "the data too.");
        var file = PipelineOptions.File();
        var set = PipelineOptions.Set();
        var json = PipelineOptions.Json();
        var data = new Option<bool>("--data")
        {
            Description = "Also run (or reuse) fetch, format and tokenize, and print the data checks, lengths, and " +
                "the train stage's steps and estimated time.",
        };
        command.Arguments.Add(file);
        command.Options.Add(set);
        command.Options.Add(json);
        command.Options.Add(data);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var result = PipelineLoader.Load(parse.GetValue(file)!.FullName, parse.GetValue(set) ?? []);
            if (parse.GetValue(json))
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    version = 1,
                    valid = !result.HasErrors,
                    diagnostics = result.Diagnostics.Select(d => new
                    {
                        severity = d.Severity == Severity.Error ? "error" : "warning",
                        code = d.Code,
                        message = d.Message,
                        file = d.File,
                        line = d.Line,
                        column = d.Column,
                    }),
                }, JsonText.Indented));
            }
            else
            {
                console.Print(result.Diagnostics);
                if (!result.HasErrors) console.Out.WriteLine($"{parse.GetValue(file)!.Name}: valid");
            }
            if (result.HasErrors) return ExitCodes.InvalidInput;
            return parse.GetValue(data)
                ? await DataReport.PrintAsync(services, console, result.Pipeline!, cancellationToken) : ExitCodes.Ok;
        });
        return command;
    }
}

/// <summary><c>schema</c>: the JSON Schema of pipeline files, for editors.</summary>
internal static class SchemaCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("schema",
            "Print the JSON Schema of pipeline files (generated from the settings the loader uses).");
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write to this file instead of stdout." };
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var schema = PipelineSchema.Generate();
            if (parse.GetValue(output) is { } file) File.WriteAllText(file.FullName, schema + "\n");
            else console.Out.WriteLine(schema);
            return ExitCodes.Ok;
        });
        return command;
    }
}
