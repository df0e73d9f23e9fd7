namespace FineTune.MSBuild.Tests;

/// <summary>
/// The hook as a user meets it: `dotnet build` of a project that declares a pipeline. One sample project goes through
/// the whole life cycle (first build, no-op build, touched file, changed setting, broken file) to keep the suite short.
/// </summary>
public class BuildIntegrationTests
{
    private const string Item = """<FineTunePipeline Include="pipelines/tiny.yaml" />""";

    [Fact]
    public async Task Runs_then_skips_then_reruns_only_what_changed_and_fails_at_the_yaml_line()
    {
        using var project = new SampleProject();
        project.WriteFixture("tiny.yaml", "pipelines/tiny.yaml");
        project.WriteFixture("data.json", "pipelines/data.json");
        project.WriteProject(Item);

        var first = await project.Build();
        Assert.True(first.ExitCode == 0, first.ToString());
        Assert.True(first.RanPipeline, first.ToString());
        foreach (var stage in new[] { "fetch", "format", "tokenize", "train", "evaluate", "export" }) Assert.True(first.StageRan(stage), stage + "\n" + first);
        Assert.Contains("EXPORT-FILE model.safetensors", first.Output);
        Assert.Contains("EXPORT-FILE config.json", first.Output);
        var lockFile = project.PathOf("pipelines/tiny.lock.yaml");
        var lockWritten = File.GetLastWriteTimeUtc(lockFile);
        var stamps = Directory.GetFiles(project.PathOf("obj"), "*.stamp", SearchOption.AllDirectories);
        Assert.Single(stamps);
        var inputs = File.ReadAllLines(Path.ChangeExtension(stamps[0], ".inputs"));
        Assert.Equal([project.PathOf("pipelines/tiny.yaml"), project.PathOf("pipelines/data.json")], inputs);

        // Nothing changed: the target is skipped (the CLI does not even start), and the export still comes back.
        var second = await project.Build();
        Assert.True(second.ExitCode == 0, second.ToString());
        Assert.False(second.RanPipeline, second.ToString());
        Assert.Equal(lockWritten, File.GetLastWriteTimeUtc(lockFile));
        Assert.Contains("EXPORT-FILE model.safetensors", second.Output);

        // A recorded input touched without a change: the target runs, the content hashes find nothing to do.
        File.SetLastWriteTimeUtc(project.PathOf("pipelines/data.json"), DateTime.UtcNow.AddSeconds(2));
        var touched = await project.Build();
        Assert.True(touched.ExitCode == 0, touched.ToString());
        Assert.True(touched.RanPipeline, touched.ToString());
        Assert.All(new[] { "fetch", "format", "tokenize", "train", "evaluate", "export" }, stage => Assert.True(touched.StageUpToDate(stage), stage + "\n" + touched));

        // A changed training setting: train and what follows it run, the data stages stay cached.
        var yaml = File.ReadAllText(project.PathOf("pipelines/tiny.yaml"));
        project.Write("pipelines/tiny.yaml", yaml.Replace("learning_rate: 1e-2", "learning_rate: 2e-2"));
        var changed = await project.Build();
        Assert.True(changed.ExitCode == 0, changed.ToString());
        Assert.All(new[] { "fetch", "format", "tokenize" }, stage => Assert.True(changed.StageUpToDate(stage), stage + "\n" + changed));
        Assert.All(new[] { "train", "evaluate", "export" }, stage => Assert.True(changed.StageRan(stage), stage + "\n" + changed));

        // A broken pipeline: the build fails with the error at the YAML line, and no stamp is left to skip the next build.
        project.Write("pipelines/tiny.yaml", yaml.Replace("learning_rate: 1e-2", "lerning_rate: 1e-2"));
        var broken = await project.Build();
        Assert.NotEqual(0, broken.ExitCode);
        Assert.Contains("pipelines/tiny.yaml(11,5): error FT0102: unknown key 'lerning_rate'", broken.Output);
        Assert.Empty(Directory.GetFiles(project.PathOf("obj"), "*.stamp", SearchOption.AllDirectories));
        var again = await project.Build();
        Assert.True(again.RanPipeline, again.ToString());
        Assert.Contains("error FT0102", again.Output);
    }

    [Fact]
    public async Task Bad_setup_fails_with_one_clear_error()
    {
        using var project = new SampleProject();
        project.WriteFixture("tiny.yaml", "pipelines/tiny.yaml");
        project.WriteFixture("data.json", "pipelines/data.json");

        project.WriteProject("""<FineTunePipeline Include="pipelines/missing.yaml" />""");
        var missingPipeline = await project.Build();
        Assert.NotEqual(0, missingPipeline.ExitCode);
        Assert.Contains("error FT0803: FineTunePipeline 'pipelines/missing.yaml' does not exist", missingPipeline.Output);

        project.WriteProject(Item, "<FineTuneToolVersion>9.9.9</FineTuneToolVersion>");
        var wrongVersion = await project.Build();
        Assert.NotEqual(0, wrongVersion.ExitCode);
        Assert.Contains("error FT0802: FineTune.MSBuild needs FineTune.Cli 9.9.9, but the tool is 0.1.0", wrongVersion.Output);
        Assert.Contains("'dotnet tool restore'", wrongVersion.Output);

        project.WriteProject(Item, "<FineTuneToolPath>/nonexistent/dotnet-finetune.dll</FineTuneToolPath>");
        var missingTool = await project.Build();
        Assert.NotEqual(0, missingTool.ExitCode);
        Assert.Contains("error FT0801: FineTuneToolPath '/nonexistent/dotnet-finetune.dll' does not exist", missingTool.Output);
        Assert.False(File.Exists(project.PathOf("pipelines/tiny.lock.yaml")));

        // Off switches: neither a design-time build nor FineTuneEnabled=false runs anything.
        project.WriteProject(Item);
        var disabled = await project.Build("-p:FineTuneEnabled=false");
        Assert.True(disabled.ExitCode == 0, disabled.ToString());
        Assert.False(disabled.RanPipeline, disabled.ToString());
        var designTime = await project.Build("-p:DesignTimeBuild=true");
        Assert.False(designTime.RanPipeline, designTime.ToString());
        Assert.False(File.Exists(project.PathOf("pipelines/tiny.lock.yaml")));
    }
}
