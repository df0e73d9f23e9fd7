using System.Text.Json.Nodes;
using FineTune.Core.Tokenization;

namespace FineTune.Torch.Tests.Fakes;

/// <summary>A tokenize stage output for train-stage tests: 24 memorisable examples over a 40-token vocabulary.</summary>
internal static class TrainData
{
    public const int Vocab = 40;

    /// <summary>Masked prompts of 2-6 tokens, each followed by its own answer of 3-6 tokens.</summary>
    public static TokenizedDataset Examples(int count = 24) => Builder(count).Build();

    private static TokenizedDataset.Builder Builder(int count)
    {
        var builder = new TokenizedDataset.Builder();
        for (var i = 0; i < count; i++)
        {
            var prompt = Enumerable.Range(0, 2 + i % 5).Select(t => 1 + (i * 7 + t) % 10).ToList();
            var answer = Enumerable.Range(0, 3 + i % 4).Select(t => 20 + (i + t * 3) % 19).ToList();
            builder.Add([.. prompt, .. answer], [.. prompt.Select(_ => TokenizedDataset.IgnoreLabel), .. answer]);
        }
        return builder;
    }

    /// <summary>Writes train.tokens and a tokenizer/ folder (38 plain tokens + ChatML markers) into <paramref name="folder"/>.</summary>
    public static string WriteTokenizeOutput(string folder)
    {
        if (File.Exists(Path.Combine(folder, "train.tokens"))) return folder;
        Directory.CreateDirectory(Path.Combine(folder, "tokenizer"));
        Builder(24).Write(Path.Combine(folder, "train.tokens"));
        var vocab = new JsonObject();
        for (var i = 0; i < Vocab - 2; i++) vocab[$"t{i}"] = i;
        File.WriteAllText(Path.Combine(folder, "tokenizer", "tokenizer.json"), new JsonObject
        {
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["use_regex"] = true },
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = Vocab - 2, ["content"] = "<|im_start|>" }, new JsonObject { ["id"] = Vocab - 1, ["content"] = "<|im_end|>" }),
        }.ToJsonString());
        File.WriteAllText(Path.Combine(folder, "tokenizer", "tokenizer_config.json"), """{"eos_token": "<|im_end|>", "pad_token": "<|im_start|>"}""");
        return folder;
    }
}
