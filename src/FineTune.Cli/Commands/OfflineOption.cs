using System.CommandLine;
using FineTune.Core.Fetching;
using FineTune.Core.Hub;

namespace FineTune.Cli.Commands;

/// <summary>
/// <c>--offline</c> on the commands that may download (run, chat, score, generate): only what the Hugging Face cache
/// and
/// the download cache hold is used, as with HF_HUB_OFFLINE=1 and FINETUNE_OFFLINE=1. A file that is not cached is an
/// error naming the model (or URL) and the file, exit code 3 like any stage that cannot get its input.
/// </summary>
internal static class OfflineOption
{
    public static Option<bool> Create() => new("--offline")
    {
        Description = $"Use only cached files, never the network (same as {HubOptions.OfflineVariable}=1 and " +
            $"{DownloadCache.OfflineVariable}=1); a file not cached is an error naming it.",
    };

    /// <summary>
    /// Turns offline mode on for the command when the flag is given. Every Hub and download client reads the mode from
    /// the environment (stages build their own), so the flag sets the two variables and puts them back afterwards.
    /// </summary>
    public static IDisposable Apply(ParseResult parse, Option<bool> option) =>
        parse.GetValue(option) ? new EnvironmentOverride([HubOptions.OfflineVariable, DownloadCache.OfflineVariable],
            "1") : new EnvironmentOverride([], "");

    private sealed class EnvironmentOverride : IDisposable
    {
        private readonly Dictionary<string, string?> _previous = [];

        public EnvironmentOverride(IEnumerable<string> names, string value)
        {
            foreach (var name in names)
            {
                _previous[name] = Environment.GetEnvironmentVariable(name);
                Environment.SetEnvironmentVariable(name, value);
            }
        }

        public void Dispose()
        {
            foreach (var (name, value) in _previous) Environment.SetEnvironmentVariable(name, value);
        }
    }
}
