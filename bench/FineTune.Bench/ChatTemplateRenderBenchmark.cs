using System.Diagnostics;
using System.Text.Json.Nodes;
using FineTune.Core.ChatTemplates;

namespace FineTune.Bench;

/// <summary>Renders a multi-turn conversation with a built-in template (Qwen3 by default) many times: the per-conversation cost the format/tokenize stages pay.</summary>
internal sealed class ChatTemplateRenderBenchmark : IBenchmark
{
    public string Name => "chat-template";
    public string Description => "render a 6-message conversation with a built-in template: [iterations=20000] [template=qwen3]";

    public int Run(string[] args)
    {
        var iterations = args.Length > 0 ? int.Parse(args[0]) : 20_000;
        var name = args.Length > 1 ? args[1] : "qwen3";
        var template = new ChatTemplate(BuiltinChatTemplates.Source(name)!, name);
        var messages = JsonNode.Parse("""
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": "What is the capital of France? Please answer briefly."},
             {"role": "assistant", "content": "<think>\nThe user asks a simple fact.\n</think>\n\nParis."},
             {"role": "user", "content": "And of Germany?"},
             {"role": "assistant", "content": "Berlin."},
             {"role": "user", "content": "Thanks! 你好 👋"}]
            """)!.AsArray();

        for (var i = 0; i < 200; i++) template.Render(messages, addGenerationPrompt: true);
        var clock = Stopwatch.StartNew();
        var chars = 0L;
        for (var i = 0; i < iterations; i++) chars += template.Render(messages, addGenerationPrompt: true).Length;
        clock.Stop();

        var microseconds = clock.Elapsed.TotalMicroseconds / iterations;
        Console.WriteLine($"chat-template ({name}): {iterations} renders in {clock.Elapsed.TotalMilliseconds:F0} ms, {microseconds:F1} µs per conversation ({chars / iterations} chars each)");
        Console.WriteLine($"{{\"benchmark\": \"chat-template\", \"iterations\": {iterations}, \"us_per_render\": {microseconds:F2}}}");
        return 0;
    }
}
