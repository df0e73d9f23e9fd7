using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace FineTune.MSBuild.Tests;

/// <summary>
/// The FineTune.MSBuild package serves both MSBuilds: `dotnet build` (MSBuild on .NET) and Visual Studio or
/// MSBuild.exe (MSBuild on .NET Framework). Neither Windows nor .NET Framework MSBuild is here, so this checks what
/// decides whether Visual Studio can load the task: the packed net472 assembly is a .NET Framework assembly that
/// references nothing .NET Framework lacks, and the props select it when MSBuildRuntimeType is Full.
/// </summary>
public class PackageTests
{
    [Fact]
    public async Task Package_has_a_task_assembly_for_each_MSBuild_runtime_and_the_props_pick_it()
    {
        using var work = new SampleProject();
        var pack = await SampleProject.Dotnet(SampleProject.RepositoryRoot,
            ["pack", "src/FineTune.MSBuild", "--no-build", "-c", SampleProject.Configuration, "-o", work.PathOf("feed"), "-nologo"]);
        Assert.True(pack.ExitCode == 0, pack.ToString());
        var package = Assert.Single(Directory.GetFiles(work.PathOf("feed"), "FineTune.MSBuild.*.nupkg"));
        ZipFile.ExtractToDirectory(package, work.PathOf("package"));

        var dotnetTask = work.PathOf("package/tasks/net10.0/FineTune.MSBuild.dll");
        var frameworkTask = work.PathOf("package/tasks/net472/FineTune.MSBuild.dll");
        Assert.Equal(".NETCoreApp,Version=v10.0", TargetFramework(dotnetTask));
        Assert.Equal(".NETFramework,Version=v4.7.2", TargetFramework(frameworkTask));
        var frameworkReferences = AssemblyReferences(frameworkTask);
        Assert.Contains("mscorlib", frameworkReferences);
        // .NET-only assemblies would fail to load in Visual Studio's MSBuild.
        Assert.DoesNotContain("System.Runtime", frameworkReferences);
        Assert.DoesNotContain("System.Text.Json", frameworkReferences);

        // Here MSBuild runs on .NET: the props pick the net10.0 task.
        work.Write("Probe.proj", $"""<Project><Import Project="{work.PathOf("package/build/FineTune.MSBuild.props")}" /></Project>""");
        Assert.Equal(dotnetTask, await TaskAssemblyOf(work, "Probe.proj"));

        // MSBuildRuntimeType is reserved (no -p: can set it) and no .NET Framework MSBuild runs here, so the props are
        // evaluated as Visual Studio's MSBuild would see them: a copy beside the original with the value put in.
        var props = File.ReadAllText(work.PathOf("package/build/FineTune.MSBuild.props"));
        Assert.Contains("$(MSBuildRuntimeType)", props);
        work.Write("package/build/FineTune.MSBuild.Full.props", props.Replace("$(MSBuildRuntimeType)", "Full"));
        work.Write("ProbeFull.proj", $"""<Project><Import Project="{work.PathOf("package/build/FineTune.MSBuild.Full.props")}" /></Project>""");
        Assert.Equal(frameworkTask, await TaskAssemblyOf(work, "ProbeFull.proj"));
    }

    private static async Task<string> TaskAssemblyOf(SampleProject work, string project)
    {
        var result = await SampleProject.Dotnet(work.Folder, ["msbuild", project, "-getProperty:FineTuneTaskAssembly", "-nologo"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        return Path.GetFullPath(result.Output.Trim());
    }

    private static string? TargetFramework(string assemblyPath)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var reader = pe.GetMetadataReader();
        foreach (var handle in reader.GetAssemblyDefinition().GetCustomAttributes())
        {
            var attribute = reader.GetCustomAttribute(handle);
            if (attribute.Constructor.Kind != HandleKind.MemberReference) continue;
            var type = reader.GetMemberReference((MemberReferenceHandle)attribute.Constructor).Parent;
            if (type.Kind != HandleKind.TypeReference || reader.GetString(reader.GetTypeReference((TypeReferenceHandle)type).Name) != "TargetFrameworkAttribute") continue;
            // The blob: prolog (2 bytes), then the constructor's one string argument.
            var blob = reader.GetBlobReader(attribute.Value);
            blob.ReadUInt16();
            return blob.ReadSerializedString();
        }
        return null;
    }

    private static HashSet<string> AssemblyReferences(string assemblyPath)
    {
        using var stream = File.OpenRead(assemblyPath);
        using var pe = new PEReader(stream);
        var reader = pe.GetMetadataReader();
        return reader.AssemblyReferences.Select(h => reader.GetString(reader.GetAssemblyReference(h).Name)).ToHashSet();
    }
}
