namespace FineTune.Core.Stages;

/// <summary>A stage threw something unexpected: exit code 3, the message shown, the stack trace kept for
/// --verbose.</summary>
internal sealed class StageFailedException(string stage, Exception inner)
    : Exception($"stage '{stage}' failed: {inner.Message}", inner)
{
    public string Stage { get; } = stage;
}
