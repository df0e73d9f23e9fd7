using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using FineTune.Core.ChatTemplates;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Architecture;

/// <summary>
/// The split of the code into assemblies holds: the Jinja engine and the tokenizer library stand alone, FineTune.*
/// assemblies reference each other without cycles, and Core (what a pipeline needs without a model) never pulls in
/// TorchSharp.
/// </summary>
public class DependencyTests
{
    private static readonly string[] Expected = ["FineTune.Core", "FineTune.Jinja", "FineTune.Tokenizers", "FineTune.Torch"];

    /// <summary>FineTune.* assembly -> the assemblies it references, read from the files next to the tests.</summary>
    private static readonly Lazy<Dictionary<string, string[]>> References = new(() =>
        Directory.GetFiles(AppContext.BaseDirectory, "FineTune.*.dll")
            .Where(path => !Path.GetFileNameWithoutExtension(path).EndsWith(".Tests", StringComparison.Ordinal))
            .ToDictionary(path => Path.GetFileNameWithoutExtension(path), ReferencedAssemblies, StringComparer.Ordinal));

    private static string[] ReferencedAssemblies(string path)
    {
        using var stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        var metadata = pe.GetMetadataReader();
        return metadata.AssemblyReferences.Select(handle => metadata.GetString(metadata.GetAssemblyReference(handle).Name)).ToArray();
    }

    private static bool IsFineTune(string assembly) => assembly.StartsWith("FineTune.", StringComparison.Ordinal);

    [Fact]
    public void The_assemblies_under_test_are_all_there()
    {
        Assert.Subset(References.Value.Keys.ToHashSet(), Expected.ToHashSet());
    }

    [Fact]
    public void FineTune_assemblies_reference_each_other_without_cycles()
    {
        var graph = References.Value.ToDictionary(entry => entry.Key, entry => entry.Value.Where(IsFineTune).ToHashSet(), StringComparer.Ordinal);
        Assert.Null(TypeDependencies.FindCycle(graph));
    }

    [Theory]
    [InlineData("FineTune.Jinja")]
    [InlineData("FineTune.Tokenizers")]
    public void The_standalone_libraries_reference_no_other_FineTune_assembly(string library)
    {
        Assert.DoesNotContain(References.Value[library], IsFineTune);
    }

    [Fact]
    public void Core_does_not_reach_TorchSharp()
    {
        var reached = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>(["FineTune.Core"]);
        while (pending.TryPop(out var assembly))
        {
            if (!reached.Add(assembly)) continue;
            Assert.DoesNotContain(References.Value[assembly], name => name.StartsWith("TorchSharp", StringComparison.Ordinal));
            foreach (var next in References.Value[assembly].Where(IsFineTune)) pending.Push(next);
        }
        Assert.Equal(["FineTune.Core", "FineTune.Jinja", "FineTune.Tokenizers"], reached.Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// Namespaces of an assembly use each other in one direction only (the root namespace, which holds the shared
    /// plumbing, uses none of them), so each can be read, and later moved, on its own.
    /// </summary>
    [Theory]
    [InlineData("FineTune.Core")]
    [InlineData("FineTune.Jinja")]
    [InlineData("FineTune.Tokenizers")]
    public void Namespaces_use_each_other_without_cycles(string assemblyName)
    {
        var cycles = TypeDependencies.NamespaceCycles(Assembly.LoadFrom(Path.Combine(AppContext.BaseDirectory, assemblyName + ".dll")));
        Assert.True(cycles.Count == 0, "namespace cycles:\n" + string.Join("\n", cycles));
    }
}
