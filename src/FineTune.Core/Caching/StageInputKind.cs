namespace FineTune.Core.Caching;

/// <summary>Where something a stage read comes from; decides whether build integration watches it.</summary>
internal enum StageInputKind
{
    /// <summary>The committed output of an upstream stage.</summary>
    Upstream,

    /// <summary>A file of the user's (the data, a tokenizer or model folder, a .jinja template): build integration
    /// watches it.</summary>
    LocalFile,

    /// <summary>A file of a Hugging Face Hub snapshot in the Hub cache, pinned by its commit.</summary>
    HubFile,

    /// <summary>A download pinned by its sha256 (a URL), not fetched to compute the key.</summary>
    Pinned,

    /// <summary>Something built into the tool (the gpt2 tokenizer), identified by its description.</summary>
    Builtin,
}
