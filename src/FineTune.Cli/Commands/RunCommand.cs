using FineTune.Core;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using FineTune.Cli.Output;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.Core.Stages;
using FineTune.Torch.Distributed;
using Microsoft.Extensions.DependencyInjection;

namespace FineTune.Cli.Commands;

/// <summary><c>run</c> executes the pipeline; <c>status</c> says what run would do, doing nothing.</summary>
internal static class RunCommand
{
    public static Command Create(IServiceProvider services, CliConsole console, bool dryRun)
    {
        var command = new Command(dryRun ? "status" : "run", dryRun
            ? "Show which stages are up to date and why the others would run, without running anything."
            : "Run the pipeline: every stage whose inputs or settings changed, skipping the rest.");
        var file = PipelineOptions.File();
        var set = PipelineOptions.Set();
        var json = PipelineOptions.Json();
        var until = new Option<string?>("--until") { Description = "Stop after this stage." };
        var only = new Option<string?>("--only") { Description = "Run only this stage (the stages before it must be " +
            "up to date)." };
        var force = new Option<string?>("--force")
        {
            Description = "Re-run a stage even if its output is cached; without a stage name, every selected stage.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var noWait = new Option<bool>("--no-wait") { Description = "Fail at once if another run is using the store, " +
            "instead of waiting." };
        var restart = new Option<bool>("--restart")
        {
            Description = "Discard checkpoints that interrupted runs with other settings left, and train from the " +
                "start.",
        };
        var resumeWithChanges = new Option<bool>("--resume-with-changes")
        {
            Description = "Continue an interrupted training from its checkpoint although settings changed (only "
                + string.Join(", ", TrainSettings.ResumableKeys) + " may differ).",
        };
        var verify = new Option<bool>("--verify")
        {
            Description = "Hash every reused output file again (sizes are always checked); a damaged one is moved " +
                "aside and computed again.",
        };
        var inputsFile = InputsFile.Option();
        command.Arguments.Add(file);
        var offline = OfflineOption.Create();
        foreach (var option in new Option[] { set, until, only, json, offline, verify }) command.Options.Add(option);
        if (!dryRun) { command.Options.Add(force); command.Options.Add(noWait); command.Options.Add(inputsFile);
            command.Options.Add(restart); command.Options.Add(resumeWithChanges); }

        command.SetAction(async (parse, cancellationToken) =>
        {
            using var offlineMode = OfflineOption.Apply(parse, offline);
            if (parse.GetValue(restart) && parse.GetValue(resumeWithChanges))
                throw new FineTuneException(DiagnosticCodes.ConflictingCheckpointOptions,
                    "--restart and --resume-with-changes exclude each other: discard the checkpoint, or continue " +
                    "from it");
            var clock = Stopwatch.StartNew();
            var pipeline = PipelineOptions.Load(console, parse.GetValue(file)!, parse.GetValue(set));
            if (pipeline is null) return ExitCodes.InvalidInput;
            var forceGiven = parse.GetResult(force) is not null;
            // Under mpirun, srun or torchrun every process runs this command; rank 0 alone writes and prints.
            var follower = !dryRun && LauncherEnvironment.FromProcess() is { IsMultiProcess: true, Rank: > 0 };
            var options = new RunOptions
            {
                DryRun = dryRun,
                Until = parse.GetValue(until),
                Only = parse.GetValue(only),
                ForceAll = forceGiven && parse.GetValue(force) is null,
                ForceStage = parse.GetValue(force),
                WaitForLock = !parse.GetValue(noWait),
                Verify = parse.GetValue(verify),
                Checkpoints = parse.GetValue(restart) ? CheckpointPolicy.Restart
                    : parse.GetValue(resumeWithChanges) ? CheckpointPolicy.ResumeWithChanges
                    : CheckpointPolicy.Resume,
                Follower = follower,
            };
            var asJson = parse.GetValue(json);
            IRunObserver observer = follower ? new ConsoleObserver(TextWriter.Null, TextWriter.Null, false)
                : SignalAtObserver.Wrap(new ConsoleObserver(asJson ? console.Error : console.Out, console.Error,
                    console.Interactive), cancellationToken);
            var runner = services.GetRequiredService<PipelineRunner>();
            var outcomes = await runner.RunAsync(pipeline, options, observer, cancellationToken);
            if (follower) return ExitCodes.Ok;

            if (!dryRun && parse.GetValue(inputsFile) is { } inputsPath)
                InputsFile.Write(inputsPath.FullName, pipeline, outcomes);
            var export = outcomes.LastOrDefault(o => o.Stage == "export"
                && o.OutputDirectory is not null)?.OutputDirectory;
            if (asJson)
            {
                console.Out.WriteLine(JsonSerializer.Serialize(new
                {
                    version = 1,
                    pipeline = pipeline.Name,
                    file = pipeline.FilePath,
                    dry_run = dryRun,
                    elapsed_s = Math.Round(clock.Elapsed.TotalSeconds, 3),
                    stages = outcomes.Select(o => new
                    {
                        stage = o.Stage,
                        status = o.Status switch { StageStatus.UpToDate => "up-to-date",
                            StageStatus.Restored => "restored", StageStatus.Ran => "ran", _ => "will-run" },
                        reasons = o.Reasons,
                        key = o.Entry?.Key,
                        output = o.OutputDirectory,
                        duration_s = o.Entry?.DurationSeconds,
                        summary = o.Entry?.Summary,
                        timings = o.Entry?.Timings,
                    }),
                    export_directory = export,
                }, JsonText.Indented));
                return ExitCodes.Ok;
            }

            var ran = outcomes.Count(o => o.Status == StageStatus.Ran);
            var pending = outcomes.Count(o => o.Status == StageStatus.WillRun);
            if (dryRun)
                console.Out.WriteLine(pending == 0 ? "Everything is up to date." : $"{pending} stage(s) would run.");
            else
            {
                console.Out.WriteLine(ran == 0
                    ? $"Everything is up to date; nothing to do ({Durations.Format(clock.Elapsed.TotalSeconds)})."
                    : $"Done: {ran} stage(s) ran, {outcomes.Count - ran} up to date, in " +
                        $"{Durations.Format(clock.Elapsed.TotalSeconds)}.");
                if (export is not null)
                    console.Out.WriteLine($"Model: {Path.GetRelativePath(Directory.GetCurrentDirectory(), export)}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }
}
