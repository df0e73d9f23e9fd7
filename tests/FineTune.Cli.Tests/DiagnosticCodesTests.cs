using FineTune.TestKit;
using System.Text.Json;
using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;

namespace FineTune.Cli.Tests;

public partial class DiagnosticCodesTests
{
    private const string Regenerate = "dotnet run --project src/FineTune.Cli -c Release -- codes --markdown";
    private const string BeginMarker = "<!-- codes:begin -->\n";
    private const string EndMarker = "<!-- codes:end -->";

    [Fact]
    public async Task Readme_error_table_matches_the_generated_one()
    {
        using var cli = new CliHarness();
        var generated = await cli.Run("codes", "--markdown");
        Assert.Equal(0, generated.ExitCode);

        var readmePath = Path.Combine(Repository.Root, "README.md");
        var readme = File.ReadAllText(readmePath).ReplaceLineEndings("\n");
        var begin = readme.IndexOf(BeginMarker, StringComparison.Ordinal);
        var end = readme.IndexOf(EndMarker, StringComparison.Ordinal);
        Assert.True(begin >= 0 && end > begin,
            $"README.md lacks the '{BeginMarker.Trim()}' ... '{EndMarker}' block holding the output of '{Regenerate}'");
        var shipped = readme[(begin + BeginMarker.Length)..end];
        Assert.True(shipped == generated.Out,
            $"README.md's error table is out of date: put the output of '{Regenerate}' between the markers");
    }

    [Fact]
    public void Every_code_mentioned_in_the_source_is_in_the_catalogue()
    {
        var catalogued = DiagnosticCodes.All.Select(code => code.Code).ToHashSet();
        var unknown = SourceFiles()
            .SelectMany(file => CodePattern().Matches(File.ReadAllText(file))
                .Select(match => $"{match.Value} in {Relative(file)}"))
            .Where(mention => !catalogued.Contains(mention[..6]))
            .ToList();
        Assert.True(unknown.Count == 0, "codes missing from DiagnosticCodes: " + string.Join(", ", unknown));
    }

    [Fact]
    public void Every_catalogued_code_is_used_in_the_source()
    {
        var used = new HashSet<string>();
        foreach (var file in SourceFiles())
        {
            var text = File.ReadAllText(file);
            foreach (Match match in UsePattern().Matches(text)) used.Add(match.Groups["code"].Value);
            foreach (Match match in ConstantPattern().Matches(text)) used.Add(match.Groups["name"].Value);
        }
        var unused = DiagnosticCodes.All
            .Where(code => !used.Contains(code.Code) && !used.Contains(code.Name))
            .Select(code => $"{code.Code} ({code.Name})")
            .ToList();
        Assert.True(unused.Count == 0, "catalogued but reported nowhere in src/: " + string.Join(", ", unused));
    }

    [Fact]
    public void Codes_are_unique_well_formed_and_explained()
    {
        var all = DiagnosticCodes.All;
        Assert.NotEmpty(all);
        Assert.All(all, code => Assert.Matches(@"^FT\d{4}$", code.Code));
        Assert.All(all, code => Assert.False(string.IsNullOrWhiteSpace(code.Meaning) || code.Meaning.Contains('\n'),
            $"{code.Code} needs a one-line meaning"));
        var repeated = all.GroupBy(code => code.Code).Where(group => group.Count() > 1).Select(group => group.Key);
        Assert.True(!repeated.Any(), "codes given to more than one constant: " + string.Join(", ", repeated));
        Assert.Equal(all.Select(code => code.Code).Order(StringComparer.Ordinal), all.Select(code => code.Code));
    }

    [Fact]
    public async Task Codes_json_lists_the_whole_catalogue()
    {
        using var cli = new CliHarness();
        var result = await cli.Run("codes", "--json");
        Assert.Equal(0, result.ExitCode);
        var document = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal(1, document.GetProperty("version").GetInt32());
        var codes = document.GetProperty("codes").EnumerateArray().ToList();
        Assert.Equal(DiagnosticCodes.All.Count, codes.Count);
        var unknownKey = codes.Single(c => c.GetProperty("name").GetString() == nameof(DiagnosticCodes.UnknownKey));
        Assert.Equal(DiagnosticCodes.UnknownKey, unknownKey.GetProperty("code").GetString());
        Assert.All(codes, c => Assert.False(string.IsNullOrEmpty(c.GetProperty("meaning").GetString())));
    }

    [Fact]
    public async Task Codes_refuses_json_and_markdown_together()
    {
        using var cli = new CliHarness();
        var result = await cli.Run("codes", "--json", "--markdown");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error FT0001", result.Error);
    }

    /// <summary>The C# files under src/, less build outputs and the catalogue (which names every code).</summary>
    private static IEnumerable<string> SourceFiles()
    {
        var src = Path.Combine(Repository.Root, "src");
        var catalogue = Path.Combine(src, "FineTune.Core", "Diagnostics", "DiagnosticCodes.cs");
        return Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories)
            .Where(file => !Path.GetRelativePath(src, file).Split(Path.DirectorySeparatorChar)
                .Any(part => part is "obj" or "bin"))
            .Where(file => !string.Equals(file, catalogue, StringComparison.Ordinal));
    }

    private static string Relative(string file) => Path.GetRelativePath(Repository.Root, file);

    [GeneratedRegex(@"\bFT\d{4}\b")]
    private static partial Regex CodePattern();

    // A code reported as a literal, or printed inside an interpolated "error FTnnnn: ..." line.
    [GeneratedRegex(@"""(?<code>FT\d{4})""|\berror (?<code>FT\d{4}):")]
    private static partial Regex UsePattern();

    [GeneratedRegex(@"\bDiagnosticCodes\.(?<name>\w+)")]
    private static partial Regex ConstantPattern();
}
