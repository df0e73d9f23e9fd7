using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Hub;

/// <summary>A model repository on the Hub, <c>org/name</c> (or a legacy bare <c>name</c> such as
/// <c>gpt2</c>).</summary>
internal sealed partial record HubRepoId(string Id)
{
    /// <summary>The folder in the hub cache: <c>models--org--name</c>.</summary>
    public string CacheFolderName => "models--" + Id.Replace("/", "--", StringComparison.Ordinal);

    public override string ToString() => Id;

    public static HubRepoId Parse(string repo)
    {
        var id = repo?.Trim() ?? "";
        // The rule huggingface_hub's validate_repo_id applies.
        if (id.Length is 0 or > 96 || !RepoIdPattern().IsMatch(id) || id.Contains("--", StringComparison.Ordinal)
            || id.Contains("..", StringComparison.Ordinal))
            throw new FineTuneException(DiagnosticCodes.InvalidModelId,
                $"'{repo}' is not a Hugging Face model id: expected 'org/name' (letters, digits, '-', '_', '.'), " +
                "for example 'Qwen/Qwen2.5-0.5B-Instruct', or the path of a local folder.");
        return new HubRepoId(id);
    }

    public static bool IsCommitHash(string revision) => revision.Length == 40 && revision.All(Uri.IsHexDigit);

    [GeneratedRegex(@"^(\b[\w\-.]+\b/)?\b[\w\-.]+\b$")]
    private static partial Regex RepoIdPattern();
}
