using FineTune.Core.Fetching;

namespace FineTune.Core.Hub;

/// <summary>
/// Where models come from and where they are kept: the Hub (or a mirror), the token, and the Hugging Face cache that
/// Python's <c>huggingface_hub</c> uses too, so a model downloaded by either is found by both.
/// A class, not a record: a record's generated ToString would print the token.
/// </summary>
internal sealed class HubOptions
{
    public const string DefaultEndpoint = "https://huggingface.co";
    public const string EndpointVariable = "HF_ENDPOINT";
    public const string TokenVariable = "HF_TOKEN";
    public const string LegacyTokenVariable = "HF_HUB_TOKEN";
    public const string OfflineVariable = "HF_HUB_OFFLINE";
    public const string HubCacheVariable = "HF_HUB_CACHE";
    public const string HomeVariable = "HF_HOME";

    public Uri Endpoint { get; init; } = new(DefaultEndpoint);

    /// <summary>Sent as <c>Authorization: Bearer ...</c>; never logged, never written, never part of an
    /// error.</summary>
    public string? Token { get; init; }

    /// <summary>Send <see cref="Token"/> to an http:// endpoint too (FINETUNE_HF_TOKEN_OVER_HTTP=1, for a mirror on a
    /// trusted network); otherwise it goes over https only.</summary>
    public bool AllowTokenOverHttp { get; init; }

    public const string TokenOverHttpVariable = "FINETUNE_HF_TOKEN_OVER_HTTP";

    /// <summary>The hub cache folder holding <c>models--org--name</c> folders.</summary>
    public required string CacheDirectory { get; init; }

    /// <summary>Only the cache is used; nothing is sent anywhere.</summary>
    public bool Offline { get; init; }

    public HttpDownloader Downloader { get; init; } = HttpDownloader.Shared;

    /// <summary>How long to wait between looks at a blob lock held by another process downloading the same
    /// file.</summary>
    public TimeSpan LockPollInterval { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// The options the environment asks for: HF_ENDPOINT, HF_TOKEN (or HF_HUB_TOKEN), HF_HUB_OFFLINE, HF_HUB_CACHE or
    /// HF_HOME. <paramref name="offline"/> forces offline mode (a command-line flag); <paramref name="getVariable"/>
    /// replaces the process environment (tests).
    /// </summary>
    public static HubOptions FromEnvironment(bool offline = false, Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        var endpoint = getVariable(EndpointVariable);
        var token = getVariable(TokenVariable);
        if (string.IsNullOrWhiteSpace(token)) token = getVariable(LegacyTokenVariable);
        return new HubOptions
        {
            Endpoint = string.IsNullOrWhiteSpace(endpoint) ? new Uri(DefaultEndpoint)
                : new Uri(endpoint.Trim().TrimEnd('/')),
            Token = string.IsNullOrWhiteSpace(token) ? null : token.Trim(),
            CacheDirectory = DefaultCacheDirectory(getVariable),
            Offline = offline || IsTrue(getVariable(OfflineVariable)),
            AllowTokenOverHttp = getVariable(TokenOverHttpVariable) == "1",
        };
    }

    /// <summary>HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (as
    /// huggingface_hub does).</summary>
    public static string DefaultCacheDirectory(Func<string, string?>? getVariable = null)
    {
        getVariable ??= Environment.GetEnvironmentVariable;
        if (getVariable(HubCacheVariable) is { Length: > 0 } hubCache) return Path.GetFullPath(ExpandHome(hubCache));
        if (getVariable(HomeVariable) is { Length: > 0 } home)
            return Path.Combine(Path.GetFullPath(ExpandHome(home)), "hub");
        var cacheHome = getVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? ExpandHome(xdg)
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(Path.GetFullPath(cacheHome), "huggingface", "hub");
    }

    public override string ToString() =>
        $"HubOptions {{ Endpoint = {Endpoint}, Token = {(Token is null ? "none" : "set")}, CacheDirectory = " +
        $"{CacheDirectory}, Offline = {Offline} }}";

    private static bool IsTrue(string? value) =>
        value?.Trim().ToLowerInvariant() is "1" or "true" or "yes" or "on";

    private static string ExpandHome(string path) =>
        path == "~" || path.StartsWith("~/", StringComparison.Ordinal)
            ? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) + path[1..]
            : path;
}
