using System.Text.RegularExpressions;
using FineTune.Core.Pipeline;
using FineTune.TestKit;
using FineTune.Torch.Training;

namespace FineTune.Torch.Tests.Training;

/// <summary>The settings a checkpoint survives are declared once, on the settings, and every place that lists them agrees.</summary>
public sealed class ResumableSettingsTests
{
    [Fact]
    public void The_schedule_and_bookkeeping_survive_a_resume_and_the_model_and_data_order_do_not()
    {
        Assert.Equal(["checkpoint_every", "device", "epochs", "eval_steps", "learning_rate", "log_every", "lr_scheduler_type", "max_grad_norm", "max_steps",
            "min_lr_ratio", "warmup_ratio", "warmup_steps"],
            TrainSettings.ResumableKeys);
        Assert.Equal(TrainSettings.ResumableKeys.ToHashSet(), CheckpointGuard.ResumableSettings);
    }

    [Fact]
    public void The_readme_lists_exactly_the_resumable_settings()
    {
        var readme = File.ReadAllText(Repository.File("README.md")).ReplaceLineEndings(" ");
        var sentence = Regex.Match(readme, "one a checkpoint survives: (?<list>.*?) \\(the schedule");
        Assert.True(sentence.Success, "README.md no longer says which settings a checkpoint survives ('one a checkpoint survives: ...')");
        var listed = Regex.Matches(sentence.Groups["list"].Value, "`([a-z_]+)`").Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal);
        Assert.Equal(TrainSettings.ResumableKeys, listed);
    }
}
