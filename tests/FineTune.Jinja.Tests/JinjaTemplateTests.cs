using System.Text.Json.Nodes;

namespace FineTune.Jinja.Tests;

/// <summary>
/// One construct per case. Expected outputs follow jinja2's documented behaviour with transformers' settings
/// (trim_blocks, lstrip_blocks, keep_trailing_newline off); every pair was also checked against jinja2 3.1.
/// </summary>
public class JinjaTemplateTests
{
    private static readonly JsonObject Data = JsonNode.Parse("""
        {
          "xs": [1, 2, 3],
          "words": ["b", "A", "c"],
          "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "bye"}],
          "d": {"k": "v", "n": 1},
          "s": "  Hello World  ",
          "f": 1.0,
          "none": null,
          "t": true
        }
        """)!.AsObject();

    private static string Render(string template)
    {
        var variables = Data.ToDictionary(e => e.Key, e => e.Value?.DeepClone());
        return JinjaTemplate.Parse(template, "<test>").Render(variables);
    }

    [Theory]
    // whitespace control, trim_blocks, lstrip_blocks
    [InlineData("a\n{% if true %}\nb\n{% endif %}\nc", "a\nb\nc")]
    [InlineData("a\n    {% if true %}\n    b\n    {% endif %}\nc", "a\n    b\nc")]
    [InlineData("a  {%- if true -%}  b  {%- endif -%}  c", "abc")]
    [InlineData("a\n  {%+ if true %}b{% endif %}", "a\n  b")]
    [InlineData("{% if true +%}\nb{% endif %}", "\nb")]
    [InlineData("x {{ 1 }}\n{{ 2 }}\n", "x 1\n2")]
    [InlineData("x {{- 1 -}} \n y", "x1y")]
    [InlineData("a\n  {# note #}\nb", "a\nb")]
    [InlineData("a {#- note -#} b", "ab")]
    [InlineData("\t{% set v = 1 %}\t{{ v }}", "\t1")]
    [InlineData("line\r\nnext\r\n", "line\nnext")]
    [InlineData("{% raw %}{{ not evaluated }}{% endraw %}", "{{ not evaluated }}")]
    // output conversion (Python str/repr)
    [InlineData("{{ none }}|{{ t }}|{{ f }}|{{ 2.5e-5 }}|{{ 1e20 }}|{{ 10 / 4 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}", "None|True|1.0|2.5e-05|1e+20|2.5|3|-4|2")]
    [InlineData("{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ undefined_name }}|", "[1, 'a', None, True, 1.5]|{'k': 'v', 'n': [1]}||")]
    [InlineData("{{ [\"it's\", 'say \"hi\"', 'a\\nb'] }}", "[\"it's\", 'say \"hi\"', 'a\\nb']")]
    [InlineData("{{ 1000000000000000.0 }}|{{ 0.0001 }}|{{ 0.1 + 0.2 }}|{{ 2 ** 10 }}", "1000000000000000.0|0.0001|0.30000000000000004|1024")]
    // expressions
    [InlineData("{{ 'a' ~ 1 ~ none ~ undefined_name }}|{{ 'x' * 3 }}|{{ [1] + [2] }}", "a1None|xxx|[1, 2]")]
    [InlineData("{{ 1 < 2 < 3 }}|{{ 'b' in 'abc' }}|{{ 2 not in xs }}|{{ 'k' in d }}|{{ not none }}", "True|True|False|True|True")]
    [InlineData("{{ none or 'fallback' }}|{{ 0 and 'x' }}|{{ 'yes' if t else 'no' }}|{{ 'x' if false }}|", "fallback|0|yes||")]
    [InlineData("{{ xs[0] }}{{ xs[-1] }}{{ xs[1:] }}{{ xs[::-1] }}{{ xs[:-1] }}{{ 'abc'[::-1] }}{{ xs[10] }}", "13[2, 3][3, 2, 1][1, 2]cba")]
    [InlineData("{{ d.k }}{{ d['k'] }}{{ msgs[0].role }}{{ msgs.0.content }}{{ d.missing is defined }}", "vvuserhiFalse")]
    [InlineData("{{ -xs[0] }}|{{ (1, 2) | length }}|{{ 'ab' 'cd' }}|{{ (1, 'a') }}|{{ (1,) }}", "-1|2|abcd|(1, 'a')|(1,)")]
    // tests
    [InlineData("{{ none is none }}{{ d is mapping }}{{ xs is iterable }}{{ 's' is string }}{{ 1 is number }}{{ t is integer }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby(3) }}", "TrueTrueTrueTrueTrueFalseTrueTrueTrue")]
    [InlineData("{{ 'a' is equalto 'a' }}{{ 1 is eq 2 }}{{ xs is sequence }}{{ t is boolean }}{{ t is true }}{{ 1.5 is float }}{{ undefined_name is undefined }}{{ f is not none }}", "TrueFalseTrueTrueTrueTrueTrueTrue")]
    // string and dict methods
    [InlineData("[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\n\\nhi\\n'.lstrip('\\n') }}]", "[Hello World][Hello World  ][  Hello World][a][hi\n]")]
    [InlineData("{{ 'a,b,,c'.split(',') }}{{ ' a  b '.split() }}{{ 'a,b,c'.split(',', 1) }}{{ 'x</think>y</think>z'.split('</think>')[-1] }}", "['a', 'b', '', 'c']['a', 'b']['a', 'b,c']z")]
    [InlineData("{{ s.startswith('  H') }}{{ s.endswith('x') }}{{ 'aXa'.replace('a', 'b') }}{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}", "TrueFalsebXbABabHello WorldHello")]
    [InlineData("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.keys() | list }}{{ d.get('k') }}{{ d.get('zz', 'def') }}{{ d.get('zz') }}", "k=v;n=1;['k', 'n']vdefNone")]
    [InlineData("{{ '-'.join(['a', 'b']) }}|{{ '{} and {}'.format('x', 1) }}", "a-b|x and 1")]
    // filters
    [InlineData("[{{ s | trim }}]{{ xs | length }}{{ 'abc' | count }}{{ xs | first }}{{ xs | last }}{{ xs | join(', ') }}{{ xs | join }}", "[Hello World]3313" + "1, 2, 3123")]
    [InlineData("{{ undefined_name | default('d') }}{{ '' | default('e') }}{{ '' | default('e', true) }}{{ none | default('n') }}", "deNone")]
    [InlineData("{{ 'ab' | upper }}{{ 'AB' | lower }}{{ 'it\\'s ok' | title }}{{ 'aXa' | replace('a', 'c') }}{{ 1 | string }}{{ '42' | int + 1 }}{{ 'x' | int }}{{ '2.5' | float }}", "ABabIt's OkcXc1430" + "2.5")]
    [InlineData("{{ words | sort }}{{ words | sort(reverse=true) }}{{ xs | reverse | list }}{{ [1, 2, 1, 3] | unique | list }}{{ -3 | abs }}{{ 2.567 | round(2) }}{{ 2.5 | round }}", "['A', 'b', 'c']['c', 'b', 'A'][3, 2, 1][1, 2, 3]32.572.0")]
    [InlineData("{{ msgs | map(attribute='role') | list }}{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}{{ msgs | rejectattr('role', 'equalto', 'user') | list | length }}", "['user', 'assistant', 'user']hi+bye1")]
    [InlineData("{{ xs | select('odd') | list }}{{ xs | reject('odd') | list }}{{ ['a', 'b'] | map('upper') | list }}{{ d | items | list }}{{ {'b': 1, 'a': 2} | dictsort }}", "[1, 3][2]['A', 'B'][('k', 'v'), ('n', 1)][('a', 2), ('b', 1)]")]
    [InlineData("{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'one two  three' | wordcount }}|{{ xs | sum }}|{{ xs | max }}|{{ xs | min }}", "a\n  b\n\n  c|  a\n  b|3|6|3|1")]
    // tojson (transformers: ensure_ascii=False, key order kept)
    [InlineData("{{ {'b': [1, 2.5, 'x', none, true], 'a': {}} | tojson }}", "{\"b\": [1, 2.5, \"x\", null, true], \"a\": {}}")]
    [InlineData("{{ {'a': [1, {'b': 'c'}], 'e': []} | tojson(indent=2) }}", "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"c\"\n    }\n  ],\n  \"e\": []\n}")]
    [InlineData("{{ '你好 \"q\" \\\\ \\n\\t' | tojson }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ [1, 2] | tojson(separators=(',', ':')) }}", "\"你好 \\\"q\\\" \\\\ \\n\\t\"|{\"a\": 2, \"b\": 1}|[1,2]")]
    // for loops
    [InlineData("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.length }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %},{% endfor %}", "10323F,21213,32103L,")]
    [InlineData("{% for x in xs %}{{ loop.previtem is defined }}-{{ loop.nextitem | default('end') }};{% endfor %}", "False-2;True-3;True-end;")]
    [InlineData("{% for x in xs if x != 2 %}{{ x }}/{{ loop.length }} {% endfor %}", "1/2 3/2 ")]
    [InlineData("{% for x in [] %}a{% else %}empty{% endfor %}|{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}", "empty|1")]
    [InlineData("{% for k in d %}{{ k }}{% endfor %}|{% for c in 'ab' %}[{{ c }}]{% endfor %}|{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", "kn|[a][b]|37")]
    [InlineData("{% for x in xs %}{% for y in xs %}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}", "1231 1232 1233 ")]
    [InlineData("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}", "012135")]
    // scoping: loop bodies do not leak, namespaces do
    [InlineData("{% set y = 0 %}{% for x in xs %}{% set y = x %}{% endfor %}{{ y }}", "0")]
    [InlineData("{% set ns = namespace(y=0, seen=false) %}{% for x in xs %}{% set ns.y = ns.y + x %}{% endfor %}{{ ns.y }}{{ ns.seen }}", "6False")]
    [InlineData("{% if true %}{% set y = 5 %}{% endif %}{{ y }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}", "5|12")]
    [InlineData("{% set block %}  inner {{ 1 }}{% endset %}[{{ block }}]{% set up | upper %}x{% endset %}{{ up }}", "[  inner 1]X")]
    // macros, filter blocks, generation tags
    [InlineData("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Hi') }} {{ greet('Cy', 'Yo') }}", "Hello, Ann! Hi, Bo! Yo, Cy!")]
    [InlineData("{% macro tag(x) %}<{{ x }}>{% endmacro %}{{ tag('a') | upper }}{% filter upper %}b{{ 'c' }}{% endfilter %}", "<A>BC")]
    [InlineData("{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}[{{ m.content }}]{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", "hi[yo]bye")]
    public void Renders_like_jinja2(string template, string expected)
    {
        Assert.Equal(expected, Render(template));
    }

    [Fact]
    public void Syntax_errors_point_at_the_template_line_and_column()
    {
        var error = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse("line one\n  {% if x %}\n  {% endfor %}", "tpl.jinja"));
        Assert.Equal(JinjaErrorKind.Syntax, error.Kind);
        Assert.Equal("tpl.jinja", error.Origin);
        Assert.Equal(3, error.Line);
        Assert.Equal(6, error.Column);
    }

    [Theory]
    [InlineData("{{ 'unclosed }}", 1, 4)]
    [InlineData("ok\n{% for %}", 2, 8)]
    [InlineData("{% if x %}never closed", 1, 23)]
    [InlineData("{{ 1 + }}", 1, 8)]
    [InlineData("{% break %}", 1, 4)]
    public void Each_syntax_error_has_a_position(string template, int line, int column)
    {
        var error = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template, "t"));
        Assert.Equal(JinjaErrorKind.Syntax, error.Kind);
        Assert.Equal((line, column), (error.Line, error.Column));
    }

    [Fact]
    public void Raise_exception_carries_the_template_message_verbatim()
    {
        var template = JinjaTemplate.Parse("a\n{{ raise_exception('Roles must alternate: user/assistant/...') }}", "chat.jinja");
        var error = Assert.Throws<JinjaException>(() => template.Render(new Dictionary<string, JsonNode?>()));
        Assert.Equal(JinjaErrorKind.Raised, error.Kind);
        Assert.Equal("Roles must alternate: user/assistant/...", error.Message);
        Assert.Equal(("chat.jinja", 2), (error.Origin, error.Line));
    }

    [Theory]
    [InlineData("{{ x | nosuchfilter }}", 1, 8)]
    [InlineData("{{ x is nosuchtest }}", 1, 9)]
    public void Unknown_filters_and_tests_are_runtime_errors(string template, int line, int column)
    {
        var error = Assert.Throws<JinjaException>(() => JinjaTemplate.Parse(template, "t"));
        Assert.Equal((JinjaErrorKind.Runtime, line, column), (error.Kind, error.Line, error.Column));
    }

    [Theory]
    [InlineData("{{ d.k() }}", "'str' object is not callable")]
    [InlineData("{{ missing.attr }}", "'missing' is undefined")]
    [InlineData("{{ missing.strip() }}", "'missing' is undefined")]
    [InlineData("{{ missing + 'a' }}", "'missing' is undefined")]
    [InlineData("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str")]
    [InlineData("{{ none.strip() }}", "'None' has no attribute 'strip'")]
    public void Runtime_errors_have_a_position(string template, string message)
    {
        var error = Assert.Throws<JinjaException>(() => Render("\n" + template));
        Assert.Equal(JinjaErrorKind.Runtime, error.Kind);
        Assert.Equal(message, error.Message);
        Assert.Equal(2, error.Line);
    }

    [Fact]
    public void A_parsed_template_renders_many_times_without_carrying_state()
    {
        var template = JinjaTemplate.Parse("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}", "t");
        var variables = new Dictionary<string, JsonNode?> { ["xs"] = new JsonArray(1, 2) };
        Assert.Equal("3", template.Render(variables));
        Assert.Equal("3", template.Render(variables));
    }
}
