using FineTune.Core.Pipeline;
using FineTune.Torch.Stages;

namespace FineTune.Torch.Tests.Stages;

public sealed class PipelineStagesTests
{
    [Fact]
    public void Every_section_under_stages_has_its_stage_in_order_and_each_stage_declares_that_section_type()
    {
        var stages = PipelineStages.Create();
        Assert.Equal(["fetch", "format", "tokenize", "train", "evaluate", "export"], stages.Select(s => s.Name));
        Assert.Equal(StagesSettings.Names, stages.Select(s => s.Name));
        var pipeline = new PipelineDefinition();
        foreach (var stage in stages)
        {
            Assert.IsType(stage.SettingsType, stage.SettingsIn(pipeline));
            Assert.All(stage.DependsOn, upstream => Assert.True(
                stages.TakeWhile(s => s != stage).Any(s => s.Name == upstream), $"{stage.Name} depends on {upstream}, which does not run before it"));
        }
    }
}
