using System.Globalization;
using System.Runtime.InteropServices;
using FineTune.Core;
using FineTune.Core.Stages;

namespace FineTune.Cli.Output;

/// <summary>
/// The fault-injection suite's hook: <c>FINETUNE_TEST_SIGNAL_AT=STAGE:POINT:SIGNAL</c> makes the run send itself a
/// real signal (INT or KILL) at a named point of a stage, so that a test interrupts every stage at the same place
/// on any machine, however fast: POINT is <c>start</c> (before the stage runs), N (its N-th message or progress
/// report, from 1) or <c>done</c> (after its output is committed and the lock file written).
/// </summary>
internal sealed class SignalAtObserver(IRunObserver inner, string targetStage, string point, int? count,
    int signal, CancellationToken cancellation) : IRunObserver
{
    public const string Variable = "FINETUNE_TEST_SIGNAL_AT";

    private int _events;

    /// <summary>The observer to use: <paramref name="inner"/> itself unless the variable is set.</summary>
    public static IRunObserver Wrap(IRunObserver inner, CancellationToken cancellation)
    {
        var value = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(value) || OperatingSystem.IsWindows()) return inner;
        var parts = value.Split(':');
        var signal = parts.Length == 3 ? parts[2] switch { "INT" => 2, "KILL" => 9, _ => 0 } : 0;
        int? count = int.TryParse(parts[1], CultureInfo.InvariantCulture, out var n) ? n : null;
        if (signal == 0 || (parts[1] is not ("start" or "done") && count is null))
            throw new ArgumentException($"{Variable}={value}: expected STAGE:(start|N|done):(INT|KILL)");
        return new SignalAtObserver(inner, parts[0], parts[1], count, signal, cancellation);
    }

    public void Notice(string message) => inner.Notice(message);
    public void StageUpToDate(StageOutcome outcome) => inner.StageUpToDate(outcome);

    public void StageStarting(string stage, IReadOnlyList<string> reasons)
    {
        inner.StageStarting(stage, reasons);
        if (stage == targetStage && point == "start") Raise();
    }

    public IStageLog LogFor(string stage) =>
        stage == targetStage ? new CountingLog(inner.LogFor(stage), this) : inner.LogFor(stage);

    public void StageFinished(StageOutcome outcome)
    {
        inner.StageFinished(outcome);
        if (outcome.Stage == targetStage && point == "done") Raise();
    }

    private void Counted()
    {
        if (Interlocked.Increment(ref _events) == count) Raise();
    }

    private void Raise()
    {
        Console.Out.Flush();
        Console.Error.Flush();
        _ = Kill(Environment.ProcessId, signal);
        // SIGKILL ends the process here. SIGINT is handled on another thread: wait until it has cancelled the run, so
        // that this stage goes on cancelled however busy the machine is (a fixed 200 ms once let a loaded CI machine
        // finish the whole run first).
        if (signal == 2) cancellation.WaitHandle.WaitOne(TimeSpan.FromSeconds(30));
    }

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    private sealed class CountingLog(IStageLog inner, SignalAtObserver owner) : IStageLog
    {
        public void Info(string message) { inner.Info(message); owner.Counted(); }
        public void Warning(string message) { inner.Warning(message); owner.Counted(); }
        public void Progress(StageProgress progress) { inner.Progress(progress); owner.Counted(); }
    }
}
