using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Core.Diagnostics;

namespace FineTune.Cli.Commands.Diff;

/// <summary>
/// <c>diff [A] [B]</c>: what changed between two runs of a pipeline, read from their lock files: per stage the
/// settings, the key and the figures (losses, validation loss, perplexity, metrics, the evaluate stage's answers
/// side by side), in the spirit of <c>dvc exp diff</c>.
/// </summary>
internal static class DiffCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("diff", "Compare two runs: two lock files (or pipeline files), or one lock file " +
            "at a git revision (--rev, default HEAD) against the working copy.");
        var a = new Argument<string>("a") { Description = "A lock file or pipeline file (the old run)." };
        var b = new Argument<string?>("b") { Description = "A second lock file (the new run); without it, A at " +
            "--rev is compared with A as it is now.", Arity = ArgumentArity.ZeroOrOne };
        var revision = new Option<string?>("--rev") { Description = "The git revision of the old run (default " +
            "HEAD when B is not given)." };
        var json = new Option<bool>("--json") { Description = "Print the differences as one JSON document." };
        var all = new Option<bool>("--all") { Description = "Also list the figures and settings that did not " +
            "change." };
        command.Arguments.Add(a);
        command.Arguments.Add(b);
        foreach (var option in new Option[] { revision, json, all }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var first = LockSnapshot.LockPathOf(parse.GetValue(a)!);
            LockSnapshot old, current;
            if (parse.GetValue(b) is { } second)
            {
                old = parse.GetValue(revision) is { } rev ? LockSnapshot.FromGit(first, rev)
                    : LockSnapshot.FromFile(first);
                current = LockSnapshot.FromFile(LockSnapshot.LockPathOf(second));
            }
            else
            {
                old = LockSnapshot.FromGit(first, parse.GetValue(revision) ?? "HEAD");
                current = LockSnapshot.FromFile(first);
            }
            var diff = LockDiff.Compare(old, current, parse.GetValue(all));
            if (parse.GetValue(json)) console.Out.WriteLine(diff.ToJson(old, current).ToJsonString(JsonText.Indented));
            else diff.Print(console.Out, old, current);
            return ExitCodes.Ok;
        });
        return command;
    }
}

/// <summary>One value in the two runs (null where a run lacks it).</summary>
internal sealed record ValueChange(string Name, string? Old, string? New)
{
    /// <summary>New minus old, when both are numbers.</summary>
    public double? Change => Old is not null && New is not null && LockSnapshot.TryNumber(Old, out var o)
        && LockSnapshot.TryNumber(New, out var n) ? n - o : null;
}

internal sealed record StageDiff(string Stage, string Status, string? OldKey, string? NewKey,
    IReadOnlyList<ValueChange> Settings, IReadOnlyList<ValueChange> Figures,
    IReadOnlyList<(string Prompt, string? Old, string? New)> Answers);

internal sealed record LockDiff(IReadOnlyList<StageDiff> Stages)
{
    public static LockDiff Compare(LockSnapshot old, LockSnapshot current, bool includeUnchanged)
    {
        var names = current.Order.Concat(old.Order.Where(s => !current.Stages.ContainsKey(s))).ToList();
        var stages = new List<StageDiff>();
        foreach (var name in names)
        {
            var before = old.Stages.GetValueOrDefault(name);
            var after = current.Stages.GetValueOrDefault(name);
            var status = before is null ? "added" : after is null ? "removed"
                : before.Key == after.Key ? "unchanged" : "changed";
            var answers = new List<(string, string?, string?)>();
            if (before?.Answers is not null || after?.Answers is not null)
            {
                var oldAnswers = before?.Answers ?? [];
                var newAnswers = after?.Answers ?? [];
                foreach (var prompt in newAnswers.Select(x => x.Prompt).Concat(oldAnswers.Select(x => x.Prompt))
                             .Distinct())
                {
                    var o = oldAnswers.Where(x => x.Prompt == prompt).Select(x => x.Answer).FirstOrDefault();
                    var n = newAnswers.Where(x => x.Prompt == prompt).Select(x => x.Answer).FirstOrDefault();
                    if (includeUnchanged || o != n) answers.Add((prompt, o, n));
                }
            }
            stages.Add(new StageDiff(name, status, before?.Key, after?.Key,
                Changes(before?.Settings, after?.Settings, includeUnchanged),
                Changes(before?.Figures, after?.Figures, includeUnchanged), answers));
        }
        return new LockDiff(stages);
    }

    private static List<ValueChange> Changes(IReadOnlyDictionary<string, string>? old,
        IReadOnlyDictionary<string, string>? current, bool includeUnchanged)
    {
        old ??= new Dictionary<string, string>();
        current ??= new Dictionary<string, string>();
        return current.Keys.Concat(old.Keys.Where(k => !current.ContainsKey(k))).Distinct()
            .Select(k => new ValueChange(k, old.GetValueOrDefault(k), current.GetValueOrDefault(k)))
            .Where(c => includeUnchanged || c.Old != c.New)
            .ToList();
    }

    public void Print(TextWriter output, LockSnapshot old, LockSnapshot current)
    {
        output.WriteLine($"--- {old.Label}");
        output.WriteLine($"+++ {current.Label}");
        foreach (var stage in Stages)
        {
            var keys = stage.Status == "changed" ? $" (key {Short(stage.OldKey)} -> {Short(stage.NewKey)})" : "";
            output.WriteLine($"{stage.Stage}: {stage.Status}{keys}");
            Table(output, "settings", stage.Settings);
            Table(output, "figures", stage.Figures);
            if (stage.Answers.Count > 0)
            {
                output.WriteLine("  answers");
                foreach (var (prompt, o, n) in stage.Answers)
                {
                    output.WriteLine($"    {prompt}");
                    output.WriteLine($"      - {o ?? "(none)"}");
                    output.WriteLine($"      + {n ?? "(none)"}");
                }
            }
        }
    }

    private static void Table(TextWriter output, string title, IReadOnlyList<ValueChange> changes)
    {
        if (changes.Count == 0) return;
        output.WriteLine($"  {title}");
        var width = changes.Max(c => c.Name.Length);
        foreach (var change in changes)
        {
            var delta = change.Change is { } d && change.Old != change.New
                ? $" ({(d >= 0 ? "+" : "")}{d.ToString("0.####", CultureInfo.InvariantCulture)})" : "";
            output.WriteLine($"    {change.Name.PadRight(width)}  {change.Old ?? "(none)"} -> " +
                $"{change.New ?? "(none)"}{delta}");
        }
    }

    private static string Short(string? key) => key is null ? "(none)" : key[..Math.Min(8, key.Length)];

    public JsonObject ToJson(LockSnapshot old, LockSnapshot current)
    {
        var stages = new JsonObject();
        foreach (var stage in Stages)
            stages[stage.Stage] = new JsonObject
            {
                ["status"] = stage.Status,
                ["key"] = new JsonObject { ["old"] = stage.OldKey, ["new"] = stage.NewKey },
                ["settings"] = Values(stage.Settings),
                ["figures"] = Values(stage.Figures),
                ["answers"] = new JsonArray(stage.Answers.Select(x => (JsonNode)new JsonObject
                    { ["prompt"] = x.Prompt, ["old"] = x.Old, ["new"] = x.New }).ToArray()),
            };
        return new JsonObject { ["version"] = 1, ["old"] = old.Label, ["new"] = current.Label, ["stages"] = stages };
    }

    private static JsonObject Values(IReadOnlyList<ValueChange> changes)
    {
        var json = new JsonObject();
        foreach (var change in changes)
        {
            var entry = new JsonObject { ["old"] = Value(change.Old), ["new"] = Value(change.New) };
            if (change.Change is { } d) entry["change"] = Math.Round(d, 10);
            json[change.Name] = entry;
        }
        return json;
    }

    private static JsonNode? Value(string? text) =>
        text is null or "null" ? null
        : LockSnapshot.TryNumber(text, out var number) ? JsonValue.Create(number)
        : JsonValue.Create(text);
}
