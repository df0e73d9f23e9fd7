using FineTune.Torch.Chat;

namespace FineTune.Torch.Tests.Formats;

/// <summary>A fact that runs only when <see cref="Variable"/> names an export folder (the export stage's output).</summary>
public sealed class ExportDirFactAttribute : FactAttribute
{
    public const string Variable = "FINETUNE_GGUF_EXPORT_DIR";

    public ExportDirFactAttribute()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(Variable)))
            Skip = $"set {Variable} to an export folder written with formats [hf, gguf] (e.g. huanhuan-cpu's)";
    }
}

/// <summary>
/// Opt-in: the GGUF of a real pipeline run, loaded by llama.cpp, answers 你是谁？ with the same greedy tokens as
/// <c>dotnet finetune chat</c> on the same export's Hugging Face folder.
/// </summary>
public sealed class PipelineGgufTests
{
    [ExportDirFact]
    public void The_pipeline_gguf_answers_as_chat_does()
    {
        var export = Environment.GetEnvironmentVariable(ExportDirFactAttribute.Variable)!;
        var gguf = Directory.GetFiles(Path.Combine(export, "gguf"), "*.gguf").Single();
        using var chat = ChatSession.Open(export);
        var prompt = chat.Tokenizer.EncodeConversation([new("user", "你是谁？")], addGenerationPrompt: true);
        var answer = chat.Answer("你是谁？");

        using var llama = new LlamaCpp(gguf, contextSize: (uint)Math.Min(2048, prompt.Count + answer.TokenIds.Count + 8));
        var greedy = llama.Greedy(prompt, answer.TokenIds.Count);

        Assert.Equal(answer.TokenIds, greedy);
        // Ollama and llama.cpp tokenize the rendered prompt themselves: they must find the same ids.
        var rendered = ((FineTune.Core.Tokenization.ChatTokenizer)chat.Tokenizer).Render([new("user", "你是谁？")], true);
        Assert.Equal(prompt, llama.Tokenize(rendered));
        Assert.Equal(answer.Text, chat.Tokenizer.Decode(greedy));
    }
}
