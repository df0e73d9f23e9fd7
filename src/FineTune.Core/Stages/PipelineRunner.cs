using System.Diagnostics;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Stages;

/// <summary>
/// Runs the stages of a pipeline in order, skipping each stage whose key (settings, input hashes, implementation
/// version, cache scheme, compute environment) already has a committed output in the store, and recording every
/// stage in the lock file as soon as it is settled.
/// </summary>
internal sealed class PipelineRunner(IReadOnlyList<Stage> stages, string toolVersion)
{
    /// <summary>The stages this runner runs, in order.</summary>
    public IReadOnlyList<Stage> Stages { get; } = stages;

    public async Task<IReadOnlyList<StageOutcome>> RunAsync(PipelineDefinition pipeline, RunOptions options,
        IRunObserver observer, CancellationToken cancellationToken)
    {
        if (options.Follower && !options.DryRun)
            return await FollowAsync(pipeline, options, observer, cancellationToken);
        var selected = SelectStages(options);
        var store = new StageStore(pipeline.StorePath);
        var lockPath = LockFile.PathFor(pipeline.FilePath);
        if (!options.DryRun && store.OwnershipProblem() is { } problem)
            throw new FineTuneException(pipeline.Locate("store").Error(DiagnosticCodes.NotAStore, problem));
        using var runLock = options.DryRun ? null : store.AcquireRunLock(options.WaitForLock, observer.Notice,
            cancellationToken);
        if (!options.DryRun) store.RemoveTemporaryLeftovers();
        var record = options.DryRun ? null : new RunRecord(store, pipeline.Name);

        var previous = LockFile.Read(lockPath);
        var previousBlocks = LockFile.ReadStageBlocks(lockPath);
        var lockFile = new LockFile(lockPath) { PipelineName = pipeline.Name, ToolVersion = toolVersion };

        var outcomes = new List<StageOutcome>();
        var settled = new Dictionary<string, StoreEntry>(StringComparer.Ordinal);
        foreach (var stage in Stages)
        {
            if (!selected.Contains(stage.Name)) continue;
            cancellationToken.ThrowIfCancellationRequested();

            var pending = stage.DependsOn.Where(d => !settled.ContainsKey(d)).ToList();
            if (pending.Count > 0)
            {
                // Only a dry run gets here: an upstream stage would run first, so this key is not known yet.
                outcomes.Add(new StageOutcome(stage.Name, StageStatus.WillRun,
                    [$"input will change: {string.Join(", ", pending.Select(p => p + " output"))} (pending)"], null,
                    null, []));
                observer.StageStarting(stage.Name, outcomes[^1].Reasons);
                continue;
            }

            var (settings, environment, inputs, key, settingsTree, inputRecords, keyEnvironment) =
                KeyOf(pipeline, stage, store, settled, cancellationToken);

            var existing = store.TryGet(stage.Name, key);
            var forced = options.ForceAll || options.ForceStage == stage.Name;
            previous.Stages.TryGetValue(stage.Name, out var locked);
            // Never serve a damaged output: report it, move it aside (a dry run only reports) and compute it again.
            var damage = store.FindDamage(stage.Name, key, existing, options.Verify && !forced);
            if (damage is not null)
            {
                existing = null;
                var aside = options.DryRun ? null : store.MoveAside(stage.Name, key);
                observer.Notice(damage == StageStore.WrittenByOlderVersion
                    ? $"{stage.Name}: the stored output was written by an older version of the tool; it is " +
                        "computed again"
                    : $"{stage.Name}: the stored output is damaged ({damage})" +
                        (aside is null ? "" : $"; moved aside to {aside} and computed again"));
            }

            if (existing is not null && !forced)
            {
                var restored = locked is not null && locked.Key != key;
                var outcome = new StageOutcome(stage.Name, restored ? StageStatus.Restored : StageStatus.UpToDate,
                    restored ? ["restored from the store: " +
                        string.Join("; ", Explain(locked, settingsTree, inputRecords, keyEnvironment,
                        stage.ImplementationVersion))] : [],
                    existing, store.OutputDirectory(stage.Name, key), inputs);
                settled[stage.Name] = existing;
                lockFile.Record(existing, inputs);
                outcomes.Add(outcome);
                record?.Add(outcome);
                observer.StageUpToDate(outcome);
                continue;
            }

            var reasons = forced ? ["forced"] : Explain(locked, settingsTree, inputRecords, keyEnvironment,
                stage.ImplementationVersion);
            if (locked is not null && locked.Key == key && existing is null && !forced)
                reasons = [damage is null ? "its output is missing from the store"
                    : damage == StageStore.WrittenByOlderVersion ? "its stored output was written by an older version"
                    : $"its stored output is damaged ({damage})"];

            if (options.Only is not null && options.Only != stage.Name)
                throw new FineTuneException(DiagnosticCodes.OnlyStageNotUpToDate,
                    $"--only {options.Only}: stage '{stage.Name}' is not up to date ({string.Join("; ", reasons)}); " +
                    $"run the stages before it first (for example with --until {stage.Name})");

            if (options.DryRun)
            {
                outcomes.Add(new StageOutcome(stage.Name, StageStatus.WillRun, reasons, null, null, inputs));
                observer.StageStarting(stage.Name, reasons);
                continue;
            }

            observer.StageStarting(stage.Name, reasons);
            var entry = await RunStageAsync(stage, pipeline, settings, store, key, settingsTree, inputRecords,
                environment, settled,
                observer.LogFor(stage.Name), options.Checkpoints, record?.TimingsLogPath(stage.Name),
                cancellationToken);
            settled[stage.Name] = entry;
            lockFile.Record(entry, inputs);
            WriteLock(lockFile, previousBlocks);
            var ran = new StageOutcome(stage.Name, StageStatus.Ran, reasons, entry,
                store.OutputDirectory(stage.Name, key), inputs);
            outcomes.Add(ran);
            record?.Add(ran);
            observer.StageFinished(ran);
        }

        if (!options.DryRun && lockFile.Stages.Count > 0) WriteLock(lockFile, previousBlocks);
        return outcomes;
    }

    /// <summary>
    /// A follower rank (<see cref="RunOptions.Follower"/>): for each selected stage up to the last one that runs on
    /// every rank, waits for rank 0 to commit it, or runs it into a private scratch folder that is then deleted.
    /// Rank 0 is the one that commits that stage's output.
    /// </summary>
    private async Task<IReadOnlyList<StageOutcome>> FollowAsync(PipelineDefinition pipeline, RunOptions options,
        IRunObserver observer, CancellationToken cancellationToken)
    {
        var selected = SelectStages(options);
        var stages = Stages.Where(s => selected.Contains(s.Name)).ToList();
        var last = stages.FindLastIndex(s => s.RunsOnEveryRank(s.SettingsIn(pipeline)));
        var store = new StageStore(pipeline.StorePath);
        var outcomes = new List<StageOutcome>();
        var settled = new Dictionary<string, StoreEntry>(StringComparer.Ordinal);
        for (var i = 0; i <= last; i++)
        {
            var stage = stages[i];
            var (settings, environment, inputs, key, _, _, _) =
                KeyOf(pipeline, stage, store, settled, cancellationToken);
            var existing = store.TryGet(stage.Name, key);
            var forced = options.ForceAll || options.ForceStage == stage.Name;
            if (stage.RunsOnEveryRank(settings) && (existing is null || forced))
            {
                var scratch = Directory.CreateTempSubdirectory("finetune-rank-").FullName;
                try
                {
                    var context = NewContext(pipeline, stage, settings, store, scratch,
                        store.WorkDirectory(stage.Name, key), settled, environment, observer.LogFor(stage.Name),
                        options.Checkpoints);
                    await stage.RunAsync(context, cancellationToken);
                }
                finally { StageStore.TryDelete(scratch); }
                outcomes.Add(new StageOutcome(stage.Name, StageStatus.Ran, ["runs on every rank"], null, null,
                    inputs));
                if (i == last) break;
            }
            StoreEntry? entry;
            var told = false;
            // Rank 0 commits it; a rank 0 that fails ends the launch, and the launcher ends this process.
            while ((entry = store.TryGet(stage.Name, key)) is null)
            {
                if (!told) { observer.Notice($"waiting for rank 0 to settle stage '{stage.Name}'"); told = true; }
                await Task.Delay(200, cancellationToken);
            }
            settled[stage.Name] = entry;
            if (outcomes.Count == 0 || outcomes[^1].Stage != stage.Name)
                outcomes.Add(new StageOutcome(stage.Name, StageStatus.UpToDate, [], entry,
                    store.OutputDirectory(stage.Name, key), inputs));
        }
        return outcomes;
    }

    private void WriteLock(LockFile lockFile, IReadOnlyDictionary<string, string> previousBlocks) =>
        lockFile.Write([.. Stages.Select(s => s.Name)], previousBlocks);

    private HashSet<string> SelectStages(RunOptions options)
    {
        var names = Stages.Select(s => s.Name).ToList();
        foreach (var (option, value) in new[] { ("--until", options.Until), ("--only", options.Only),
            ("--force", options.ForceStage) })
        {
            if (value is null || names.Contains(value)) continue;
            var suggestion = DidYouMean.Suggest(value, names);
            throw new FineTuneException(DiagnosticCodes.UnknownStage,
                $"{option} {value}: no such stage; stages are {string.Join(", ", names)}" +
                (suggestion is null ? "" : $"; did you mean '{suggestion}'?"));
        }
        if (options.Only is not null) return [.. names.Take(names.IndexOf(options.Only) + 1)];
        if (options.Until is not null) return [.. names.Take(names.IndexOf(options.Until) + 1)];
        return [.. names];
    }

    private static StageContext NewContext(PipelineDefinition pipeline, Stage stage, object settings, StageStore store,
        string output, string work,
        Dictionary<string, StoreEntry> settled, ComputeEnvironment environment, IStageLog log,
            CheckpointPolicy checkpoints = CheckpointPolicy.Resume, string? timingsLog = null,
            CancellationToken cancellation = default)
    {
        var upstream = stage.DependsOn.Where(settled.ContainsKey).ToList();
        return new()
        {
            Checkpoints = checkpoints,
            Pipeline = pipeline,
            Settings = settings,
            PipelineDirectory = pipeline.Directory,
            OutputDirectory = output,
            WorkDirectory = work,
            InputDirectories = upstream.ToDictionary(d => d, d => store.OutputDirectory(d, settled[d].Key)),
            InputEntries = upstream.ToDictionary(d => d, d => settled[d]),
            Log = log,
            Environment = environment,
            Name = stage.Name,
            TimingsLogPath = timingsLog,
            Cancellation = cancellation,
        };
    }

    /// <summary>A stage's settings, environment and inputs, as its key is computed from them.</summary>
    private sealed record KeyedStage(object Settings, ComputeEnvironment Environment, IReadOnlyList<StageInput> Inputs,
        string Key, SortedDictionary<string, object?> SettingsTree, SortedDictionary<string, FileRecord> InputRecords,
        SortedDictionary<string, string> KeyEnvironment);

    /// <summary>Resolves <paramref name="stage"/>'s environment and inputs (its upstream stages settled) and keys it.
    /// </summary>
    private static KeyedStage KeyOf(PipelineDefinition pipeline, Stage stage, StageStore store,
        Dictionary<string, StoreEntry> settled, CancellationToken cancellationToken)
    {
        var settings = stage.SettingsIn(pipeline);
        var probe = NewContext(pipeline, stage, settings, store, "", "", settled, ComputeEnvironment.None,
            NullLog.Instance, cancellation: cancellationToken);
        var environment = stage.ResolveEnvironment(probe);
        probe = NewContext(pipeline, stage, settings, store, "", "", settled, environment, NullLog.Instance,
            cancellation: cancellationToken);
        IReadOnlyList<StageInput> inputs = [.. stage.DependsOn.Select(d => StageInput.Upstream(d, settled[d])),
            .. stage.ReadInputs(probe)];
        var key = ComputeKey(stage, settings, inputs, environment, out var settingsTree, out var inputRecords,
            out var keyEnvironment);
        return new KeyedStage(settings, environment, inputs, key, settingsTree, inputRecords, keyEnvironment);
    }

    /// <summary>
    /// The stage key: a hash of the canonical tree of everything that decides the output (cache scheme, stage and its
    /// implementation, settings, input hashes, device and libtorch).
    /// </summary>
    private static string ComputeKey(Stage stage, object settings, IReadOnlyList<StageInput> inputs,
        ComputeEnvironment environment,
        out SortedDictionary<string, object?> settingsTree, out SortedDictionary<string, FileRecord> inputRecords,
        out SortedDictionary<string, string> keyEnvironment)
    {
        settingsTree = SettingsReflection.ToPlainTree(settings);
        inputRecords = new SortedDictionary<string, FileRecord>(StringComparer.Ordinal);
        foreach (var input in inputs) inputRecords[input.Name] = new FileRecord(input.Sha256, input.Size);
        keyEnvironment = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (!environment.IsNone)
        {
            keyEnvironment[ComputeEnvironment.DeviceKey] = environment.Device;
            keyEnvironment[ComputeEnvironment.LibTorchKey] = environment.LibTorchVersion;
        }
        var material = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["scheme"] = (long)StageStore.CacheScheme,
            ["stage"] = stage.Name,
            ["implementation"] = (long)stage.ImplementationVersion,
            ["settings"] = settingsTree,
            ["inputs"] = inputRecords.ToDictionary(kv => kv.Key, kv => (object?)kv.Value.Sha256),
            ["environment"] = keyEnvironment.ToDictionary(kv => kv.Key, kv => (object?)kv.Value),
        };
        return ContentHash.OfText(CanonicalJson.Serialize(material));
    }

    /// <summary>Why a stage must run, compared with what the lock file says it last ran with.</summary>
    internal static List<string> Explain(LockFile.LockedStage? locked, SortedDictionary<string, object?> settings,
        SortedDictionary<string, FileRecord> inputs,
        SortedDictionary<string, string> environment, int implementation)
    {
        if (locked is null) return ["no previous run recorded in the lock file"];
        var reasons = new List<string>();
        var now = SettingsReflection.Flatten(settings).ToDictionary(kv => kv.Key,
            kv => SettingsReflection.Display(kv.Value));
        var changed = now.Keys.Union(locked.FlatSettings.Keys).OrderBy(k => k, StringComparer.Ordinal)
            .Where(k => now.GetValueOrDefault(k) != locked.FlatSettings.GetValueOrDefault(k))
            .Select(k => $"{k} {locked.FlatSettings.GetValueOrDefault(k) ?? "(unset)"} -> " +
                $"{now.GetValueOrDefault(k) ?? "(unset)"}")
            .ToList();
        if (changed.Count > 0) reasons.Add("settings changed: " + string.Join(", ", changed));
        var inputChanges = inputs.Keys.Union(locked.InputHashes.Keys).OrderBy(k => k, StringComparer.Ordinal)
            .Where(k => inputs.GetValueOrDefault(k)?.Sha256 != locked.InputHashes.GetValueOrDefault(k))
            .ToList();
        if (inputChanges.Count > 0) reasons.Add("input changed: " + string.Join(", ", inputChanges));
        if (implementation != locked.Implementation)
            reasons.Add($"stage implementation changed (version {locked.Implementation} -> {implementation})");
        var environmentChanges = environment.Where(kv => locked.Environment.GetValueOrDefault(kv.Key) != kv.Value)
            .Select(kv => $"{kv.Key} {locked.Environment.GetValueOrDefault(kv.Key) ?? "(unset)"} -> {kv.Value}")
                .ToList();
        if (environmentChanges.Count > 0) reasons.Add("environment changed: " + string.Join(", ", environmentChanges));
        if (reasons.Count == 0) reasons.Add("cache scheme changed");
        return reasons;
    }

    private async Task<StoreEntry> RunStageAsync(Stage stage, PipelineDefinition pipeline, object settings,
        StageStore store, string key,
        SortedDictionary<string, object?> settingsTree, SortedDictionary<string, FileRecord> inputs,
            ComputeEnvironment environment,
        Dictionary<string, StoreEntry> settled, IStageLog log, CheckpointPolicy checkpoints, string? timingsLog,
            CancellationToken cancellationToken)
    {
        var temporary = store.NewTemporaryEntry();
        var work = store.WorkDirectory(stage.Name, key);
        Directory.CreateDirectory(work);
        var context = NewContext(pipeline, stage, settings, store, Path.Combine(temporary, "output"), work, settled,
            environment, log, checkpoints, timingsLog, cancellationToken);
        var started = DateTime.UtcNow;
        var clock = Stopwatch.StartNew();
        try
        {
            await stage.RunAsync(context, cancellationToken);
            return Commit(stage, store, key, settingsTree, inputs, environment, temporary, context, started, clock);
        }
        catch (Exception e)
        {
            // Measured before the partial output goes: what the stage had written is about what it needs.
            var disk = DiskFull.Is(e) ? DiskFull.Error(store.Root, DiskFull.SizeOf(temporary) + DiskFull.SizeOf(work),
                e) : null;
            StageStore.TryDelete(temporary);
            if (disk is not null) throw disk;
            if (e is OperationCanceledException or FineTuneException) throw;
            throw new StageFailedException(stage.Name, e);
        }
    }

    private StoreEntry Commit(Stage stage, StageStore store, string key, SortedDictionary<string, object?> settingsTree,
        SortedDictionary<string, FileRecord> inputs, ComputeEnvironment environment, string temporary,
        StageContext context, DateTime started, Stopwatch clock)
    {
        var recordedEnvironment = new SortedDictionary<string,
            string>(StringComparer.Ordinal) { ["tool"] = toolVersion };
        if (!environment.IsNone)
        {
            recordedEnvironment[ComputeEnvironment.DeviceKey] = environment.Device;
            recordedEnvironment[ComputeEnvironment.LibTorchKey] = environment.LibTorchVersion;
            recordedEnvironment[ComputeEnvironment.ThreadsKey] =
                environment.Threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        var summary = new SortedDictionary<string, object?>(context.Summary.ToDictionary(kv => kv.Key,
            kv => SettingsReflection.ToPlainValue(kv.Value)), StringComparer.Ordinal);
        return store.Commit(temporary, (outputs, outputHash) => new StoreEntry
        {
            Stage = stage.Name,
            Key = key,
            Implementation = stage.ImplementationVersion,
            Settings = settingsTree,
            Inputs = inputs,
            Outputs = outputs,
            OutputHash = outputHash,
            Environment = recordedEnvironment,
            Summary = summary,
            StartedUtc = started,
            DurationSeconds = Math.Round(clock.Elapsed.TotalSeconds, 3),
            Timings = new SortedDictionary<string, object?>(context.Timings.ToDictionary(kv => kv.Key,
                kv => SettingsReflection.ToPlainValue(kv.Value)), StringComparer.Ordinal),
        });
    }

    private sealed class NullLog : IStageLog
    {
        public static readonly NullLog Instance = new();
        public void Info(string message) { }
        public void Warning(string message) { }
        public void Progress(StageProgress progress) { }
    }
}
