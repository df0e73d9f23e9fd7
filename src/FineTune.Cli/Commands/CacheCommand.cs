using System.CommandLine;
using FineTune.Cli.Output;
using FineTune.Core.Caching;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Core.Pipeline;

namespace FineTune.Cli.Commands;

/// <summary><c>cache add</c> (the user-level download cache) and <c>cache gc</c> (a pipeline folder's store).</summary>
internal static class CacheCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("cache", "Manage the download cache and the stage store.");

        var add = new Command("add",
            "Put a file into the user-level download cache by its sha256, so an offline machine can run pipelines " +
            "that fetch it.");
        var file = new Argument<FileInfo>("file") { Description = "The file to add." };
        add.Arguments.Add(file);
        add.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            if (!path.Exists)
                throw new FineTuneException(DiagnosticCodes.DataPinMismatch, $"'{path.FullName}' does not exist");
            var cache = DownloadCache.Default();
            var sha256 = cache.Add(path.FullName);
            console.Out.WriteLine($"{sha256}  {path.Name} ({Bytes.Format(path.Length)}) added to {cache.Root}");
            return ExitCodes.Ok;
        });

        var gc = new Command("gc",
            "Remove store entries that no lock file refers to (and leftovers of interrupted runs).");
        var target = new Argument<FileSystemInfo?>("pipeline-or-folder")
        {
            Description = "A pipeline file or the folder holding pipelines (default: pipelines/ if it exists, else " +
                "the current folder).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var dryRun = new Option<bool>("--dry-run") { Description = "List what would be removed without removing it." };
        var checkpoints = new Option<bool>("--checkpoints")
        {
            Description = "Also remove the checkpoints of interrupted stages (work/), which a later run would " +
                "resume from.",
        };
        gc.Arguments.Add(target);
        gc.Options.Add(dryRun);
        gc.Options.Add(checkpoints);
        gc.SetAction((parse, cancellationToken) =>
        {
            var (storeRoot, folder) = ResolveStore(parse.GetValue(target));
            var store = new StageStore(storeRoot);
            if (!Directory.Exists(store.Root))
            {
                console.Out.WriteLine($"no store at {store.Root}; nothing to collect");
                return Task.FromResult(ExitCodes.Ok);
            }
            using var runLock = store.AcquireRunLock(wait: true, console.Error.WriteLine, cancellationToken);
            var lockFiles = Directory.EnumerateFiles(folder, "*.lock.yaml").ToList();
            var result = StoreGarbageCollector.Collect(store, lockFiles, parse.GetValue(dryRun),
                parse.GetValue(checkpoints));
            foreach (var removed in result.Removed) console.Out.WriteLine((parse.GetValue(dryRun) ? "would remove "
                : "removed ") + Path.GetRelativePath(Directory.GetCurrentDirectory(), removed));
            console.Out.WriteLine($"{result.Removed.Count} removed ({Bytes.Format(result.BytesFreed)}), " +
                $"{result.Kept} kept, lock files read: {lockFiles.Count}");
            var work = Path.Combine(store.Root, "work");
            if (!parse.GetValue(checkpoints) && Directory.Exists(work) && Directory.EnumerateDirectories(work).Any())
                console.Out.WriteLine($"checkpoints of interrupted stages kept in {work} (--checkpoints removes them)");
            return Task.FromResult(ExitCodes.Ok);
        });

        var verify = new Command("verify",
            "Hash every file of every store entry again; a damaged entry is moved aside (the next run computes it " +
            "again). Exit code 3 when one was damaged.");
        var verifyTarget = new Argument<FileSystemInfo?>("pipeline-or-folder")
        {
            Description = gc.Arguments[0].Description,
            Arity = ArgumentArity.ZeroOrOne,
        };
        verify.Arguments.Add(verifyTarget);
        verify.SetAction((parse, cancellationToken) =>
        {
            var store = new StageStore(ResolveStore(parse.GetValue(verifyTarget)).Store);
            if (!Directory.Exists(store.Root))
            {
                console.Out.WriteLine($"no store at {store.Root}; nothing to verify");
                return Task.FromResult(ExitCodes.Ok);
            }
            using var runLock = store.AcquireRunLock(wait: true, console.Error.WriteLine, cancellationToken);
            int checkedCount = 0, damaged = 0, older = 0;
            foreach (var (stage, key, _) in store.Entries().ToList())
            {
                cancellationToken.ThrowIfCancellationRequested();
                checkedCount++;
                if (store.FindDamage(stage, key, store.TryGet(stage, key), rehash: true) is not { } damage) continue;
                var aside = store.MoveAside(stage, key);
                if (damage == StageStore.WrittenByOlderVersion)
                {
                    older++;
                    console.Out.WriteLine($"{stage} entry {key[..16]}: written by an older version of the tool; " +
                        "moved aside, the next run computes it again");
                    continue;
                }
                damaged++;
                console.Error.WriteLine(Diagnostic.Error(DiagnosticCodes.DamagedStoreEntry,
                    $"{stage} entry {key[..16]}: {damage}; moved aside to {aside}").Format());
            }
            console.Out.WriteLine($"{checkedCount} entries checked, {damaged} damaged" +
                (older > 0 ? $", {older} written by an older version" : "") +
                (damaged + older > 0 ? " (the next run computes them again)" : ""));
            return Task.FromResult(damaged > 0 ? ExitCodes.StageFailed : ExitCodes.Ok);
        });

        command.Subcommands.Add(add);
        command.Subcommands.Add(gc);
        command.Subcommands.Add(verify);
        return command;
    }

    private static (string Store, string Folder) ResolveStore(FileSystemInfo? target)
    {
        if (target is FileInfo { Exists: true } pipelineFile)
        {
            var pipeline = PipelineLoader.LoadOrThrow(pipelineFile.FullName);
            return (pipeline.StorePath, pipeline.Directory);
        }
        var folder = target?.FullName
            ?? (Directory.Exists("pipelines") ? Path.GetFullPath("pipelines") : Directory.GetCurrentDirectory());
        if (!Directory.Exists(folder)) throw new FineTuneException(DiagnosticCodes.NotAPipelineOrFolder,
            $"'{folder}' is neither a pipeline file nor a folder");
        return (Path.Combine(folder, ".finetune"), folder);
    }
}
