[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace FineTune.MSBuild.Tests;

/// <summary>
/// The README's build-integration quick start, command by command, on packages packed from this repository: the
/// tool, the build package and the template reach a project outside the repository only through `--feed`.
/// </summary>
public class TemplateTests
{
    // The README's lines, checked to be there verbatim, so the README cannot drift from what this test runs.
    private const string ReadmePack = "dotnet pack src/FineTune.Cli && dotnet pack src/FineTune.MSBuild";
    private const string ReadmeInstall = "dotnet new install templates/content/finetune-project";
    private const string ReadmeCreateAndBuild = """dotnet new finetune -n MyModel -o ../MyModel --feed "$PWD/artifacts/packages" && cd ../MyModel && dotnet build""";

    [Fact]
    public async Task Readme_quick_start_creates_a_project_that_restores_from_the_feed_and_builds_its_model()
    {
        var readme = File.ReadAllText(Path.Combine(SampleProject.RepositoryRoot, "README.md"));
        foreach (var line in new[] { ReadmePack, ReadmeInstall, ReadmeCreateAndBuild }) Assert.Contains(line, readme);

        // The same commands with what keeps the test to itself: packages into a temporary feed instead of
        // artifacts/packages (which also covers `pack -o`), a private CLI home, package folder and template hive,
        // and the builds the test project already did. The work folder's nuget.config clears the user's feeds.
        using var work = new SampleProject();
        var environment = new Dictionary<string, string>
        {
            ["DOTNET_CLI_HOME"] = work.PathOf("home"),
            ["NUGET_PACKAGES"] = work.PathOf("packages"),
        };
        var root = SampleProject.RepositoryRoot;
        var feed = work.PathOf("feed");
        string[] hive = ["--debug:custom-hive", work.PathOf("hive")];
        string[] isolatedPack = ["--no-build", "-c", SampleProject.Configuration, "-o", feed, "-nologo"];

        var packTool = await SampleProject.Dotnet(root, ["pack", "src/FineTune.Cli", .. isolatedPack], environment);
        Assert.True(packTool.ExitCode == 0, packTool.ToString());
        Assert.Contains($"'dotnet finetune' is ready in {root}, installed from {feed}", packTool.Output);
        var packTask = await SampleProject.Dotnet(root, ["pack", "src/FineTune.MSBuild", .. isolatedPack], environment);
        Assert.True(packTask.ExitCode == 0, packTask.ToString());
        var package = Assert.Single(Directory.GetFiles(feed, "FineTune.MSBuild.*.nupkg"));
        Assert.Matches(@"FineTune\.MSBuild\.\d+\.\d+\.\d+-dev\.\d{14}\.nupkg$", package);

        var install = await SampleProject.Dotnet(root, ["new", "install", "templates/content/finetune-project", .. hive], environment);
        Assert.True(install.ExitCode == 0, install.ToString());

        // `-o ../MyModel` from the clone: the project lands beside it, away from the repository's own build files.
        Directory.CreateDirectory(work.PathOf("clone"));
        var created = await SampleProject.Dotnet(work.PathOf("clone"), ["new", "finetune", "-n", "MyModel", "-o", "../MyModel", "--feed", feed, .. hive], environment);
        Assert.True(created.ExitCode == 0, created.ToString());
        foreach (var file in new[] { "MyModel.csproj", "pipeline.yaml", "data/examples.json", "dotnet-tools.json", "nuget.config" })
            Assert.True(File.Exists(work.PathOf(Path.Combine("MyModel", file))), file);
        Assert.Contains("name: MyModel", File.ReadAllText(work.PathOf("MyModel/pipeline.yaml")));
        Assert.Contains($"value=\"{feed}\"", File.ReadAllText(work.PathOf("MyModel/nuget.config")));

        // As on another machine (an empty CLI home and package folder) and with no FineTuneToolPath: the build restores
        // FineTune.MSBuild and, through dotnet-tools.json, the tool, both from the feed that --feed wrote down.
        var elsewhere = new Dictionary<string, string>
        {
            ["DOTNET_CLI_HOME"] = work.PathOf("other-home"),
            ["NUGET_PACKAGES"] = work.PathOf("other-packages"),
        };
        var build = await SampleProject.Dotnet(work.PathOf("MyModel"), ["build"], elsewhere);
        Assert.True(build.ExitCode == 0, build.ToString());
        Assert.True(build.RanPipeline, build.ToString());
        Assert.Contains("running 'dotnet tool restore'", build.Output);
        Assert.True(File.Exists(work.PathOf("MyModel/bin/Debug/net10.0/model/model.safetensors")), build.ToString());
        Assert.True(File.Exists(work.PathOf("MyModel/bin/Debug/net10.0/model/tokenizer.json")), build.ToString());

        // Without --feed nothing points at a local folder: no nuget.config, the user's feeds as they are.
        var plain = await SampleProject.Dotnet(work.PathOf("clone"), ["new", "finetune", "-n", "Plain", "-o", "../Plain", .. hive], environment);
        Assert.True(plain.ExitCode == 0, plain.ToString());
        Assert.False(File.Exists(work.PathOf("Plain/nuget.config")));
    }
}
