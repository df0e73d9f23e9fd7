using FineTune.Core.Caching;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;

namespace FineTune.TestKit;

/// <summary>
/// A fake stage over a real settings section: writes a deterministic function of its settings and its inputs' outputs
/// into out.txt, and counts its runs. <see cref="Behaviour"/> runs first (to fail, wait or cancel).
/// </summary>
internal sealed class RecordingStage<TSettings>(string name, string[] dependsOn, bool outputIgnoresInputs = false) : Stage<TSettings>
    where TSettings : class
{
    public int Runs;
    public Func<StageContext, CancellationToken, Task>? Behaviour;
    public int Version = 1;
    public Func<StageContext, IReadOnlyList<StageInput>>? Inputs;

    public override string Name => name;
    public override int ImplementationVersion => Version;
    public override IReadOnlyList<string> DependsOn => dependsOn;

    protected override IReadOnlyList<StageInput> ReadInputs(StageContext context, TSettings settings) => Inputs?.Invoke(context) ?? [];

    protected override async Task RunAsync(StageContext context, TSettings settings, CancellationToken cancellationToken)
    {
        Runs++;
        if (Behaviour is not null) await Behaviour(context, cancellationToken);
        var upstream = string.Concat(DependsOn.Select(d => File.ReadAllText(Path.Combine(context.Input(d), "out.txt"))));
        var own = CanonicalJson.Serialize(SettingsReflection.ToPlainTree(settings));
        File.WriteAllText(Path.Combine(context.OutputDirectory, "out.txt"), outputIgnoresInputs ? own : upstream + Name + own + "\n");
        context.Summary["runs"] = Runs;
    }
}
