using System.Text.Json.Nodes;
using FineTune.Core.Diagnostics;
using FineTune.Core.ChatTemplates;

namespace FineTune.Core.Tests.ChatTemplates;

/// <summary>
/// Byte-for-byte renderings of real chat templates (assets/templates, see NOTICE.md). Each expected string was worked
/// out by hand from the template text and jinja2's rules, then checked against jinja2 3.1 with transformers' settings.
/// </summary>
public class ChatTemplateGoldenTests
{
    private const string Tool = """
        {"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
        """;

    private const string ToolJson =
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", "
        + "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}";

    private static ChatTemplate Load(string name) =>
        new(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "assets", "templates", name + ".jinja")), name + ".jinja");

    private static JsonArray Messages(params (string Role, string Content)[] messages) =>
        new(messages.Select(m => (JsonNode?)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray());

    private static JsonArray Json(string json) => JsonNode.Parse(json)!.AsArray();

    // ---- Llama 3 ---------------------------------------------------------------------------------------------------

    [Fact]
    public void Llama3_trims_each_message_and_prefixes_bos_once()
    {
        var text = Load("llama3").Render(
            Messages(("system", "You are a helpful assistant."), ("user", "  Hello,\tworld!  \n\n"), ("assistant", "  Hi there  "), ("user", "你好 👩‍💻")),
            addGenerationPrompt: true, bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHello,\tworld!<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\n你好 👩‍💻<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Llama3_keeps_inner_whitespace_and_stops_without_generation_prompt()
    {
        var text = Load("llama3").Render(Messages(("user", "a  b\t\tc\n\n\nd"), ("assistant", "x")), addGenerationPrompt: false, bosToken: "<|begin_of_text|>");
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\na  b\t\tc\n\n\nd<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nx<|eot_id|>", text);
    }

    // ---- Llama 3.1 -------------------------------------------------------------------------------------------------

    [Fact]
    public void Llama31_without_system_or_tools_uses_the_default_date()
    {
        var text = Load("llama3.1").Render(Messages(("user", "Hi!"), ("assistant", " Hello! "), ("user", "Who are you?")),
            addGenerationPrompt: true, bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>");
        Assert.Equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Llama31_with_tools_puts_them_in_the_first_user_message_with_indent_4_json()
    {
        var text = Load("llama3.1").Render(Messages(("system", "  You are terse.\n"), ("user", "What's the weather in Paris?")),
            addGenerationPrompt: true, tools: Json("[" + Tool + "]"),
            extraVariables: new JsonObject { ["date_string"] = "01 Jan 2025" }, bosToken: "<|begin_of_text|>", eosToken: "<|eot_id|>");
        const string toolIndented = "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
            + "        \"description\": \"Get the weather\",\n        \"parameters\": {\n            \"type\": \"object\",\n"
            + "            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n                }\n"
            + "            },\n            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}";
        Assert.Equal("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
            + "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\nYou are terse.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\n"
            + "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n"
            + "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n"
            + toolIndented + "\n\n"
            + "What's the weather in Paris?<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Llama31_renders_a_tool_call_and_json_encodes_a_string_tool_result()
    {
        // "is iterable" holds for strings, so the template runs tool output through tojson and it arrives quoted.
        var messages = Json("""
            [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "{\"temp\": 21}"}]
            """);
        var text = Load("llama3.1").Render(messages, addGenerationPrompt: true, tools: Json("[" + Tool + "]"), bosToken: "<|begin_of_text|>");
        var expectedStart = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
            + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n";
        var expectedEnd = "Weather in Paris?<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
            + "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 21}\"<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n";
        Assert.StartsWith(expectedStart, text);
        Assert.EndsWith(expectedEnd, text);
    }

    // ---- Qwen2.5 ---------------------------------------------------------------------------------------------------

    [Fact]
    public void Qwen25_adds_its_default_system_prompt_and_keeps_content_verbatim()
    {
        var text = Load("qwen2.5").Render(Messages(("user", "Hello <|im_end|> world"), ("assistant", "  leading spaces kept")), addGenerationPrompt: false);
        Assert.Equal("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            + "<|im_start|>user\nHello <|im_end|> world<|im_end|>\n"
            + "<|im_start|>assistant\n  leading spaces kept<|im_end|>\n", text);
    }

    [Fact]
    public void Qwen25_uses_the_given_system_prompt_and_adds_the_generation_prompt()
    {
        var text = Load("qwen2.5").Render(Messages(("system", "你是一个乐于助人的助手。"), ("user", "Tabs\tand\n\nnewlines  ")), addGenerationPrompt: true);
        Assert.Equal("<|im_start|>system\n你是一个乐于助人的助手。<|im_end|>\n<|im_start|>user\nTabs\tand\n\nnewlines  <|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Qwen25_renders_tools_tool_calls_and_grouped_tool_responses()
    {
        var messages = Json("""
            [{"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             {"role": "tool", "content": "{\"temp\": 21}"},
             {"role": "tool", "content": "second"}]
            """);
        var text = Load("qwen2.5").Render(messages, addGenerationPrompt: true, tools: Json("[" + Tool + "]"));
        Assert.Equal("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
            + "You may call one or more functions to assist with the user query.\n\n"
            + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + ToolJson + "\n</tools>\n\n"
            + "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
            + "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\nsecond\n</tool_response><|im_end|>\n"
            + "<|im_start|>assistant\n", text);
    }

    // ---- Qwen3 -----------------------------------------------------------------------------------------------------

    [Fact]
    public void Qwen3_with_thinking_disabled_adds_an_empty_think_block()
    {
        var text = Load("qwen3").Render(Messages(("user", "Hi 👨‍👩‍👧 你好")), addGenerationPrompt: true,
            extraVariables: new JsonObject { ["enable_thinking"] = false });
        Assert.Equal("<|im_start|>user\nHi 👨‍👩‍👧 你好<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", text);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(null)]
    public void Qwen3_with_thinking_enabled_or_unset_leaves_the_prompt_open(bool? enableThinking)
    {
        var extra = enableThinking is bool b ? new JsonObject { ["enable_thinking"] = b } : null;
        var text = Load("qwen3").Render(Messages(("user", "Hi")), addGenerationPrompt: true, extraVariables: extra);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Qwen3_strips_thinking_from_earlier_turns_and_keeps_it_after_the_last_query()
    {
        var text = Load("qwen3").Render(Messages(("system", "Be brief."), ("user", "1+1?"), ("assistant", "<think>\nadd them\n</think>\n\n2"),
            ("user", "and 2+2?"), ("assistant", "<think>\n\nfour\n\n</think>\n\n4")), addGenerationPrompt: false);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
            + "<|im_start|>user\nand 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nfour\n</think>\n\n4<|im_end|>\n", text);
    }

    [Fact]
    public void Qwen3_uses_reasoning_content_when_given()
    {
        var messages = Json("""[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A", "reasoning_content": "R1\n"}]""");
        var text = Load("qwen3").Render(messages, addGenerationPrompt: false);
        Assert.Equal("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nR1\n</think>\n\nA<|im_end|>\n", text);
    }

    // ---- Mistral v0.3 ----------------------------------------------------------------------------------------------

    [Fact]
    public void Mistral_puts_the_system_prompt_into_the_last_user_turn()
    {
        var text = Load("mistral").Render(Messages(("system", "Be nice."), ("user", "Hello"), ("assistant", "  Hi there  "), ("user", "How are you?")),
            addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>");
        Assert.Equal("<s>[INST] Hello[/INST] Hi there</s>[INST] Be nice.\n\nHow are you?[/INST]", text);
    }

    [Fact]
    public void Mistral_lists_tools_before_the_last_user_message()
    {
        var text = Load("mistral").Render(Messages(("user", "Weather in Paris?")), addGenerationPrompt: true, tools: Json("[" + Tool + "]"),
            bosToken: "<s>", eosToken: "</s>");
        Assert.Equal("<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", "
            + "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]"
            + "[/AVAILABLE_TOOLS][INST] Weather in Paris?[/INST]", text);
    }

    [Fact]
    public void Mistral_raises_when_roles_do_not_alternate()
    {
        var template = Load("mistral");
        var error = Assert.Throws<FineTuneException>(() =>
            template.Render(Messages(("user", "a"), ("user", "b")), addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>"));
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal("FT0411", diagnostic.Code);
        Assert.Equal("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...", diagnostic.Message);
        Assert.Equal("mistral.jinja", diagnostic.File);
        Assert.Equal(18, diagnostic.Line);
    }
}
