using System.Text.Json.Nodes;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Tokenization;

namespace FineTune.Core.Tests.ChatTemplates;

public class BuiltinChatTemplatesTests
{
    private static JsonArray Conversation() => JsonNode.Parse("""
        [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]
        """)!.AsArray();

    [Fact]
    public void Every_named_template_has_a_source_that_parses()
    {
        Assert.Equal(["llama3", "chatml", "qwen2.5", "qwen3", "mistral", "alpaca"], BuiltinChatTemplates.Names);
        foreach (var name in BuiltinChatTemplates.Names)
            _ = new ChatTemplate(BuiltinChatTemplates.Source(name)!, name);
        Assert.Null(BuiltinChatTemplates.Source("nope"));
    }

    [Theory]
    [InlineData("llama3")]
    [InlineData("qwen2.5")]
    [InlineData("qwen3")]
    [InlineData("mistral")]
    public void The_model_templates_are_the_published_ones(string name)
    {
        var published = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "assets", "templates", name + ".jinja"));
        Assert.Equal(published, BuiltinChatTemplates.Source(name));
    }

    [Fact]
    public void Chatml_is_the_template_the_tokenizer_writes()
    {
        Assert.Same(ChatML.Jinja, BuiltinChatTemplates.Source("chatml"));
        var text = new ChatTemplate(ChatML.Jinja, "chatml").Render(Conversation(), addGenerationPrompt: true);
        Assert.Equal("<|im_start|>user\nAdd 2 and 3.<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Alpaca_uses_the_standard_preamble_and_ends_answers_with_eos()
    {
        var template = new ChatTemplate(BuiltinChatTemplates.Source("alpaca")!, "alpaca");
        Assert.Equal("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
            + "### Instruction:\nAdd 2 and 3.\n\n### Response:\n5</s>",
            template.Render(Conversation(), addGenerationPrompt: false, eosToken: "</s>"));

        var withSystem = JsonNode.Parse("""[{"role": "system", "content": "Answer in words."}, {"role": "user", "content": "2+3?"}]""")!.AsArray();
        Assert.Equal("Answer in words.\n\n### Instruction:\n2+3?\n\n### Response:\n", template.Render(withSystem, addGenerationPrompt: true, eosToken: "</s>"));
    }
}
