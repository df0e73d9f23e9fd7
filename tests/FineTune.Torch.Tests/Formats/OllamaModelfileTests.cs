using System.Text;
using System.Text.RegularExpressions;
using FineTune.Core.Data;
using FineTune.Core.Pipeline;
using FineTune.Core.Tokenization;
using FineTune.Torch.Formats.Ollama;

namespace FineTune.Torch.Tests.Formats;

public sealed class OllamaModelfileTests
{
    private static readonly ChatMessage[][] Samples =
    [
        [new("user", "你是谁？")],
        [new("system", "你是甄嬛。"), new("user", "你好"), new("assistant", "臣妾在。"), new("user", "皇上呢？")],
        [new("user", "a\nb"), new("assistant", "c  d"), new("user", "e")],
    ];

    [Theory]
    [InlineData("chatml", "chatml", null)]
    [InlineData("qwen2.5", "chatml", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")]
    [InlineData("llama3", "llama3", null)]
    public void The_Go_template_renders_sample_conversations_as_the_chat_template_does(string chatTemplate, string ollama,
        string? defaultSystem)
    {
        var tokenizer = ChatTokenizer.LoadGpt2(chatTemplate);
        var match = OllamaModelfile.Find(m => tokenizer.Render(m, addGenerationPrompt: true), tokenizer.BosToken);

        Assert.NotNull(match);
        Assert.Equal(ollama, match.Template.Name);
        Assert.Equal(defaultSystem, match.DefaultSystem);
        foreach (var sample in Samples)
        {
            // What Ollama does: SYSTEM (when the request has none) joins .Messages, then the Go template renders.
            IReadOnlyList<ChatMessage> messages = defaultSystem is not null && sample[0].Role != "system"
                ? [new ChatMessage("system", defaultSystem), .. sample] : sample;
            var expected = tokenizer.Render(sample, addGenerationPrompt: true);
            if (tokenizer.BosToken is { } bos && expected.StartsWith(bos, StringComparison.Ordinal)) expected = expected[bos.Length..];
            Assert.Equal(expected, GoTemplate.Render(match.Template.Go, messages));
        }
    }

    [Fact]
    public void Validate_names_exactly_the_built_in_templates_that_have_no_Ollama_equivalent()
    {
        var without = FineTune.Core.ChatTemplates.BuiltinChatTemplates.Names.Where(name =>
        {
            var tokenizer = ChatTokenizer.LoadGpt2(name);
            return OllamaModelfile.Find(m => tokenizer.Render(m, addGenerationPrompt: true), tokenizer.BosToken) is null;
        });
        Assert.Equal(ExportChecks.TemplatesWithoutOllamaEquivalent.Order(), without.Order());
    }

    [Fact]
    public void Another_template_gets_an_editable_fallback_that_says_so()
    {
        var tokenizer = ChatTokenizer.LoadGpt2("alpaca");
        var match = OllamaModelfile.Find(m => tokenizer.Render(m, addGenerationPrompt: true), tokenizer.BosToken);
        Assert.Null(match);

        var text = OllamaModelfile.Write("model-F16.gguf", null, tokenizer.Template.Source, ["<|im_end|>"], new EvaluateSettings());
        Assert.Contains("# FT0726", text);
        Assert.Contains("TEMPLATE \"\"\"" + OllamaModelfile.ChatML.Go + "\"\"\"", text);
        Assert.Contains("#   " + tokenizer.Template.Source.Split('\n')[0], text);
    }

    [Fact]
    public void The_Modelfile_names_the_gguf_the_stops_and_the_evaluate_sampling()
    {
        var sampling = new EvaluateSettings { Temperature = 0.7, TopP = 0.9, RepetitionPenalty = 1.1, Seed = 5, MaxNewTokens = 48 };
        var text = OllamaModelfile.Write("model-Q8_0.gguf", new OllamaModelfile.Match(OllamaModelfile.ChatML, null), "",
            ["<|im_end|>", "<|endoftext|>"], sampling);
        var lines = text.Split('\n');
        Assert.Contains("FROM ./model-Q8_0.gguf", lines);
        Assert.Contains("PARAMETER stop \"<|im_end|>\"", lines);
        Assert.Contains("PARAMETER stop \"<|endoftext|>\"", lines);
        Assert.Contains("PARAMETER temperature 0.7", lines);
        Assert.Contains("PARAMETER top_p 0.9", lines);
        Assert.Contains("PARAMETER repeat_penalty 1.1", lines);
        Assert.Contains("PARAMETER seed 5", lines);
        Assert.Contains("PARAMETER num_predict 48", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("SYSTEM", StringComparison.Ordinal));
    }

    /// <summary>
    /// The part of Go's text/template the Modelfile's TEMPLATE uses, written from the text/template documentation:
    /// "{{-" and "-}}" trim the white space beside them; range over .Messages; .Role and .Content.
    /// </summary>
    private static class GoTemplate
    {
        public static string Render(string template, IReadOnlyList<ChatMessage> messages)
        {
            var parts = new List<(bool Action, string Text)>();
            var position = 0;
            foreach (Match m in Regex.Matches(template, @"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", RegexOptions.Singleline))
            {
                var text = template[position..m.Index];
                if (m.Groups[1].Success) text = text.TrimEnd(' ', '\t', '\r', '\n');
                parts.Add((false, text));
                parts.Add((true, m.Groups[2].Value + (m.Groups[3].Success ? "\u0000trim" : "")));
                position = m.Index + m.Length;
            }
            parts.Add((false, template[position..]));
            for (var i = 0; i + 1 < parts.Count; i++)
                if (parts[i].Action && parts[i].Text.EndsWith("\u0000trim", StringComparison.Ordinal))
                    parts[i + 1] = (false, parts[i + 1].Text.TrimStart(' ', '\t', '\r', '\n'));

            var output = new StringBuilder();
            Run(parts, 0, parts.Count, null, messages, output);
            return output.ToString();
        }

        private static int Run(List<(bool Action, string Text)> parts, int start, int end, ChatMessage? dot,
            IReadOnlyList<ChatMessage> messages, StringBuilder output)
        {
            for (var i = start; i < end; i++)
            {
                var (action, text) = parts[i];
                text = text.Replace("\u0000trim", "", StringComparison.Ordinal);
                if (!action) { output.Append(text); continue; }
                switch (text)
                {
                    case "end": return i;
                    case "range .Messages":
                        var close = parts.FindIndex(i + 1, p => p.Action && p.Text.StartsWith("end", StringComparison.Ordinal));
                        foreach (var message in messages) Run(parts, i + 1, close, message, messages, output);
                        i = close;
                        break;
                    case ".Role": output.Append(dot!.Role); break;
                    case ".Content": output.Append(dot!.Content); break;
                    default: throw new NotSupportedException($"{{{{{text}}}}} is not in the supported subset");
                }
            }
            return end;
        }
    }
}
