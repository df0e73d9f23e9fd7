namespace FineTune.Core.Pipeline;

/// <summary>What a setting means; shown in the JSON Schema (editor hover) and in <c>finetune schema</c>.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Class)]
internal sealed class DocAttribute(string text) : Attribute
{
    public string Text { get; } = text;
}

/// <summary>The setting must be given (no sensible default exists).</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class RequiredSettingAttribute : Attribute;

/// <summary>Inclusive or exclusive numeric bounds, checked by the loader and written into the schema.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class RangeAttribute : Attribute
{
    public double Minimum { get; init; } = double.NegativeInfinity;
    public double Maximum { get; init; } = double.PositiveInfinity;
    public bool ExclusiveMinimum { get; init; }
    public bool ExclusiveMaximum { get; init; }
}

/// <summary>
/// A training checkpoint survives a change of this setting: <c>run --resume-with-changes</c> may continue an
/// interrupted run after it changed. Settings without it fix what the checkpoint holds (the model, its trained shape,
/// the data order, the optimizer state).
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class SurvivesResumeAttribute : Attribute;

/// <summary>The string setting must be one of these values.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class OneOfAttribute(params string[] values) : Attribute
{
    public string[] Values { get; } = values;
}

/// <summary>
/// Settings classes implement this to report contradictions between settings, which a per-key check cannot see.
/// </summary>
internal interface IValidatableSettings
{
    IEnumerable<SettingProblem> Validate();
}

/// <summary>A problem with one setting, named by its YAML key (relative to the settings object); reported under
/// <paramref name="Code"/>, or the generic code for invalid stage settings.</summary>
internal sealed record SettingProblem(string Key, string Message, string? Code = null);
