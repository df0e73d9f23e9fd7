using System.Globalization;
using System.Text.Json;
using FineTune.Core.Caching;

namespace FineTune.Core.Stages;

/// <summary>
/// <c>&lt;store&gt;/runs/&lt;time&gt;-&lt;pid&gt;.json</c>: what one run did and how long each stage took, with the
/// figures that differ between identical runs (durations, throughput, MFU, thread count). They live here, beside the
/// git-ignored store, so that the lock file and the hashed outputs stay the same when nothing that matters changed.
/// Stages that log timings per step get <c>&lt;time&gt;-&lt;pid&gt;.&lt;stage&gt;.jsonl</c> beside it.
/// </summary>
internal sealed class RunRecord
{
    public const string Folder = "runs";

    private readonly string _stem;
    private readonly string _pipeline;
    private readonly DateTime _startedUtc = DateTime.UtcNow;
    private readonly List<object> _stages = [];

    public string Path => _stem + ".json";

    public RunRecord(StageStore store, string pipelineName)
    {
        var directory = Directory.CreateDirectory(System.IO.Path.Combine(store.Root, Folder)).FullName;
        _stem = System.IO.Path.Combine(directory, _startedUtc.ToString("yyyyMMdd'T'HHmmss'Z'",
            CultureInfo.InvariantCulture) + "-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        _pipeline = pipelineName;
    }

    public string TimingsLogPath(string stage) => $"{_stem}.{stage}.jsonl";

    /// <summary>Adds a settled stage and rewrites the record, so a run that crashes later still leaves it.</summary>
    public void Add(StageOutcome outcome)
    {
        var entry = outcome.Entry;
        _stages.Add(new
        {
            stage = outcome.Stage,
            status = outcome.Status.ToString().ToLowerInvariant(),
            key = entry?.Key,
            started_utc = outcome.Status == StageStatus.Ran ? entry?.StartedUtc : null,
            duration_s = outcome.Status == StageStatus.Ran ? entry?.DurationSeconds : null,
            environment = outcome.Status == StageStatus.Ran ? entry?.Environment : null,
            timings = outcome.Status == StageStatus.Ran ? entry?.Timings : null,
        });
        var text = JsonSerializer.Serialize(new
        {
            pipeline = _pipeline,
            started_utc = _startedUtc,
            stages = _stages,
        }, JsonText.Indented);
        var temporary = Path + ".tmp";
        try
        {
            File.WriteAllText(temporary, text);
            File.Move(temporary, Path, overwrite: true);
        }
        catch (IOException)
        {
            File.Delete(temporary);
            throw;
        }
    }
}
