using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.Tokenization;

/// <summary>Tokenizers loaded once per test run (the Qwen3 file is 11 MB).</summary>
internal static class Tokenizers
{
    public static string Qwen3Folder => Path.Combine(AppContext.BaseDirectory, "assets", "qwen3");

    private static readonly Lazy<ChatTokenizer> LazyGpt2 = new(ChatTokenizer.LoadGpt2);
    private static readonly Lazy<ChatTokenizer> LazyQwen3 = new(() => ChatTokenizer.LoadFolder(Qwen3Folder));

    public static ChatTokenizer Gpt2 => LazyGpt2.Value;
    public static ChatTokenizer Qwen3 => LazyQwen3.Value;

    public static ChatTokenizer ByName(string name) => name == "gpt2" ? Gpt2 : Qwen3;
}
