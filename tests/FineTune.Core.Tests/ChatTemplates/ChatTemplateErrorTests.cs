using System.Text.Json.Nodes;
using FineTune.Core.ChatTemplates;
using FineTune.Core.Diagnostics;

namespace FineTune.Core.Tests.ChatTemplates;

/// <summary>The Jinja engine's errors, as the user sees them: FT0410 syntax, FT0411 raise_exception, FT0412 runtime, located in the template.</summary>
public class ChatTemplateErrorTests
{
    private static JsonArray Messages() => [new JsonObject { ["role"] = "user", ["content"] = "hi" }];

    [Fact]
    public void Syntax_errors_are_FT0410_at_the_template_line_and_column()
    {
        var error = Assert.Throws<FineTuneException>(() => new ChatTemplate("line one\n  {% if x %}\n  {% endfor %}", "tpl.jinja"));
        Assert.Equal(ExitCodes.InvalidInput, error.ExitCode);
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0410", "tpl.jinja", 3, 6), (diagnostic.Code, diagnostic.File, diagnostic.Line, diagnostic.Column));
    }

    [Fact]
    public void Raise_exception_is_FT0411_with_the_template_message_verbatim()
    {
        var template = new ChatTemplate("a\n{{ raise_exception('Roles must alternate: user/assistant/...') }}", "chat.jinja");
        var error = Assert.Throws<FineTuneException>(() => template.Render(Messages(), addGenerationPrompt: false));
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal("FT0411", diagnostic.Code);
        Assert.Equal("Roles must alternate: user/assistant/...", diagnostic.Message);
        Assert.Equal(("chat.jinja", 2), (diagnostic.File, diagnostic.Line));
    }

    [Theory]
    [InlineData("{{ x | nosuchfilter }}", 1, 8)]
    [InlineData("{{ x is nosuchtest }}", 1, 9)]
    public void Unknown_filters_and_tests_are_FT0412(string source, int line, int column)
    {
        var error = Assert.Throws<FineTuneException>(() => new ChatTemplate(source, "t"));
        Assert.Equal(("FT0412", line, column), (error.Diagnostics[0].Code, error.Diagnostics[0].Line, error.Diagnostics[0].Column));
    }

    [Fact]
    public void Runtime_errors_are_FT0412_with_a_position()
    {
        var template = new ChatTemplate("\n{{ messages[0].content + 1 }}", "t");
        var error = Assert.Throws<FineTuneException>(() => template.Render(Messages(), addGenerationPrompt: false));
        var diagnostic = Assert.Single(error.Diagnostics);
        Assert.Equal(("FT0412", "can only concatenate str (not \"int\") to str", 2), (diagnostic.Code, diagnostic.Message, diagnostic.Line));
    }
}
