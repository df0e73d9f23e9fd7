using FineTune.Core.Pipeline;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Pipeline;

/// <summary>The optimizer and schedule settings: transformers' defaults, and located errors for values that contradict.</summary>
public sealed class TrainRecipeSettingsTests
{
    [Fact]
    public void Defaults_are_transformers_training_arguments_defaults()
    {
        var train = new TrainSettings();
        Assert.Equal("linear", train.LrSchedulerType);
        Assert.Equal((0.9, 0.999, 1e-8), (train.AdamBeta1, train.AdamBeta2, train.AdamEpsilon));
        Assert.Equal((0.0, 0.0, 0), (train.WeightDecay, train.WarmupRatio, train.WarmupSteps));
        Assert.Equal((1.0, -1), (train.MaxGradNorm, train.MaxSteps));
        Assert.Null(train.MinLrRatio);
    }

    [Fact]
    public void Bad_recipe_values_are_located_errors()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", """
            name: demo
            stages:
              fetch: { path: d.json }
              train:
                lr_scheduler_type: cosine_with_min_lr
                adam_beta2: 1
                adam_epsilon: 0
                max_steps: 0
                warmup_steps: -2
            """);
        var found = PipelineLoader.Load(path).Diagnostics.Select(d => (d.Code, d.Line)).ToList();
        Assert.Contains(("FT0107", 6), found); // beta2 must be below 1
        Assert.Contains(("FT0107", 7), found); // epsilon must be positive
        Assert.Contains(("FT0107", 9), found); // negative warmup
        var next = folder.Write("y.yaml", """
            name: demo
            stages:
              fetch: { path: d.json }
              train:
                lr_scheduler_type: cosine_with_min_lr
                max_steps: 0
            """);
        var errors = PipelineLoader.Load(next).Diagnostics;
        Assert.Contains(errors, d => d.Code == "FT0110" && d.Line == 5 && d.Message.Contains("needs min_lr_ratio"));
        Assert.Contains(errors, d => d.Code == "FT0110" && d.Line == 6 && d.Message.Contains("max_steps 0"));
    }

    [Fact]
    public void Settings_a_schedule_does_not_use_are_refused_where_they_are_written()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", """
            name: demo
            stages:
              fetch: { path: d.json }
              train:
                lr_scheduler_type: constant
                min_lr_ratio: 0.1
                warmup_ratio: 0.1
            """);
        var errors = PipelineLoader.Load(path).Diagnostics;
        Assert.Contains(errors, d => d.Code == "FT0110" && d.Line == 6 && d.Message.Contains("does not use it"));
        Assert.Contains(errors, d => d.Code == "FT0110" && d.Line == 7 && d.Message.Contains("constant_with_warmup"));
        var typo = folder.Write("y.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  train: { lr_scheduler_type: cosin }\n");
        var error = Assert.Single(PipelineLoader.Load(typo).Diagnostics);
        Assert.Equal(("FT0108", 4), (error.Code, error.Line));
        Assert.Contains("did you mean 'cosine'", error.Message);
    }

    [Fact]
    public void Eval_steps_without_a_validation_split_is_an_error_at_eval_steps()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  format: { validation: 0 }\n  train:\n    eval_steps: 50\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(("FT0110", 6), (error.Code, error.Line));
        Assert.Contains("format.validation is 0", error.Message);
    }
}
