[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace FineTune.MSBuild.Tests;

/// <summary>`dotnet new finetune` from this repository's template folder, restored against a freshly packed FineTune.MSBuild.</summary>
public class TemplateTests
{
    [Fact]
    public async Task Template_instantiates_and_builds_its_model()
    {
        using var work = new SampleProject();
        var environment = new Dictionary<string, string>
        {
            // A private CLI home and package folder: the template install and the dev package stay in this test.
            ["DOTNET_CLI_HOME"] = work.PathOf("home"),
            ["NUGET_PACKAGES"] = work.PathOf("packages"),
        };
        var root = SampleProject.RepositoryRoot;
        var configuration = Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(SampleProject.TaskAssembly)))!;

        var pack = await SampleProject.Dotnet(root, ["pack", "src/FineTune.MSBuild", "--no-build", "-c", configuration, "-o", work.PathOf("feed"), "-nologo"]);
        Assert.True(pack.ExitCode == 0, pack.ToString());
        var package = Assert.Single(Directory.GetFiles(work.PathOf("feed"), "FineTune.MSBuild.*.nupkg"));
        Assert.Matches(@"FineTune\.MSBuild\.\d+\.\d+\.\d+-dev\.\d{14}\.nupkg$", package);
        work.Write("nuget.config", $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="feed" value="{work.PathOf("feed")}" /></packageSources></configuration>
            """);

        var install = await SampleProject.Dotnet(work.Folder, ["new", "install", Path.Combine(root, "templates", "content", "finetune-project")], environment);
        Assert.True(install.ExitCode == 0, install.ToString());
        var created = await SampleProject.Dotnet(work.Folder, ["new", "finetune", "-n", "MyModel"], environment);
        Assert.True(created.ExitCode == 0, created.ToString());
        foreach (var file in new[] { "MyModel.csproj", "pipeline.yaml", "data/examples.json", "dotnet-tools.json" })
            Assert.True(File.Exists(work.PathOf(Path.Combine("MyModel", file))), file);
        Assert.Contains("name: MyModel", File.ReadAllText(work.PathOf("MyModel/pipeline.yaml")));

        var build = await SampleProject.Dotnet(work.PathOf("MyModel"), ["build", "-nologo", "-nodeReuse:false", "-p:FineTuneToolPath=" + SampleProject.CliDll], environment);
        Assert.True(build.ExitCode == 0, build.ToString());
        Assert.True(build.RanPipeline, build.ToString());
        Assert.True(File.Exists(work.PathOf("MyModel/bin/Debug/net10.0/model/model.safetensors")), build.ToString());
        Assert.True(File.Exists(work.PathOf("MyModel/bin/Debug/net10.0/model/tokenizer.json")), build.ToString());
    }
}
