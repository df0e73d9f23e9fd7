using FineTune.TestKit;
using FineTune.Torch.Models;

namespace FineTune.Torch.Tests;

public class DependencyTests
{
    [Fact]
    public void Namespaces_of_FineTune_Torch_use_each_other_without_cycles()
    {
        var cycles = TypeDependencies.NamespaceCycles(typeof(LlamaForCausalLM).Assembly);
        Assert.True(cycles.Count == 0, "namespace cycles:\n" + string.Join("\n", cycles));
    }
}
