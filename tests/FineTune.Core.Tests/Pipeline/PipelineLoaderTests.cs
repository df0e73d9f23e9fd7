using FineTune.Core.Diagnostics;
using FineTune.Core.Pipeline;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Pipeline;

public class PipelineLoaderTests
{
    private const string Valid = """
        name: demo
        params:
          max_length: 256
          data: data.json
        stages:
          fetch:
            path: ${data}
          tokenize:
            max_length: ${max_length}
          train:
            learning_rate: 3e-3
            epochs: 1.5
            builtin: { hidden_size: 64, layers: 2, heads: 4, kv_heads: 2, intermediate_size: 128 }
          evaluate:
            prompts: ["你是谁？"]
        """;

    [Fact]
    public void Valid_file_binds_typed_settings_with_defaults_and_interpolated_params()
    {
        using var folder = new TempFolder();
        var pipeline = PipelineLoader.LoadOrThrow(folder.Write("p.yaml", Valid));

        Assert.Equal("demo", pipeline.Name);
        Assert.Equal("data.json", pipeline.Stages.Fetch.Path);
        Assert.Equal(256, pipeline.Stages.Tokenize.MaxLength);
        Assert.Equal(3e-3, pipeline.Stages.Train.LearningRate);
        Assert.Equal(1.5, pipeline.Stages.Train.Epochs);
        Assert.Equal(64, pipeline.Stages.Train.Builtin.HiddenSize);
        Assert.Equal(10000, pipeline.Stages.Train.Builtin.RopeTheta); // default kept inside a partly written section
        Assert.Equal(4, pipeline.Stages.Train.BatchSize);              // default
        Assert.Equal(["你是谁？"], pipeline.Stages.Evaluate.Prompts);
        Assert.Equal(Path.Combine(folder.Path, ".finetune"), pipeline.StorePath);
    }

    [Fact]
    public void Unknown_key_is_reported_at_its_line_and_column_with_a_suggestion()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", """
            name: demo
            stages:
              fetch: { path: d.json }
              train:
                learnig_rate: 2e-4
            """);
        var result = PipelineLoader.Load(path);

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal("FT0102", error.Code);
        Assert.Equal((5, 5), (error.Line, error.Column));
        Assert.Equal("unknown key 'learnig_rate' in train; did you mean 'learning_rate'?", error.Message);
        Assert.EndsWith("x.yaml(5,5): error FT0102: unknown key 'learnig_rate' in train; did you mean 'learning_rate'?", error.Format());
        Assert.Null(result.Pipeline);
    }

    [Fact]
    public void Every_problem_is_reported_at_once()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", """
            name: demo
            stages:
              fetch: { url: "https://example.org/d.json" }
              tokenize:
                max_length: 0
                train_on: answers
              train:
                learning_rate: -1
                epochs: abc
              evalute: {}
            """);
        var result = PipelineLoader.Load(path);
        var byCode = result.Diagnostics.Select(d => (d.Code, d.Line)).ToList();

        Assert.Contains(("FT0107", 5), byCode);  // max_length 0
        Assert.Contains(("FT0108", 6), byCode);  // train_on: answers
        Assert.Contains(("FT0107", 8), byCode);  // negative learning rate
        Assert.Contains(("FT0104", 9), byCode);  // epochs: abc
        Assert.Contains(("FT0102", 10), byCode); // evalute
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("did you mean 'evaluate'?"));
        Assert.Equal(5, result.Diagnostics.Count);
    }

    [Fact]
    public void Contradictions_between_settings_are_errors_once_each_key_is_valid()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", """
            name: demo
            stages:
              fetch: { url: "https://example.org/d.json" }
              train:
                builtin: { hidden_size: 60, heads: 8 }
            """);
        var result = PipelineLoader.Load(path);

        Assert.Contains(result.Diagnostics, d => d.Code == "FT0110" && d.Line == 3 && d.Message.Contains("sha256"));
        Assert.Contains(result.Diagnostics, d => d.Code == "FT0110" && d.Line == 5 && d.Message.Contains("not divisible"));
    }

    [Fact]
    public void A_pruned_vocabulary_with_a_pretrained_model_is_a_contradiction()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  tokenize: { vocabulary: used }\n  train: { model: Qwen/Qwen2.5-0.5B-Instruct }\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(("FT0110", 4), (error.Code, error.Line));
        Assert.Contains("vocabulary: full", error.Message);
    }

    [Fact]
    public void Yaml_syntax_error_names_the_position()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nstages:\n  fetch: [a, b\n  train: {}\n");
        var diagnostics = PipelineLoader.Load(path).Diagnostics;
        var error = Assert.Single(diagnostics);
        Assert.True(error.Code == "FT0101", error.Format());
        Assert.True(error.Line >= 3, $"line {error.Line}");
    }

    public static TheoryData<string, string, int, int, string> RefusedStructures()
    {
        var laughs = "name: x\nl0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + string.Concat(Enumerable.Range(1, 9)
            .Select(i => $"l{i}: &l{i} [{string.Join(", ", Enumerable.Repeat($"*l{i - 1}", 9))}]\n"));
        return new()
        {
            // Unguarded, the first recursed until the stack overflowed and the second expanded to 9^10 nodes.
            { "recursive alias", "name: x\nstages:\n  fetch: &a [*a]\n", 3, 10, "a YAML anchor" },
            { "billion laughs", laughs, 2, 5, "a YAML anchor" },
            { "alias to nothing", "name: x\nstages: *nowhere\n", 2, 9, "a YAML alias" },
            { "100,000 nested lists", "name: x\nstages: " + new string('[', 100_000) + new string(']', 100_000), 2, 24,
                "nesting deeper than 16 levels" },
            { "17 nested maps", "name: x\nstages:\n" + string.Concat(Enumerable.Range(1, 16)
                .Select(i => new string(' ', 2 * i) + $"k{i}:\n")) + new string(' ', 34) + "v: 1\n", 18, 33,
                "nesting deeper than 16 levels" },
        };
    }

    [Theory]
    [MemberData(nameof(RefusedStructures))]
    public void Anchors_aliases_and_deep_nesting_are_refused_at_their_place(string name, string text, int line,
        int column, string what)
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", text);
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.True(error.Code == "FT0101", name + ": " + error.Format());
        Assert.Equal((path, line, column), (error.File, error.Line, error.Column));
        Assert.Contains(what, error.Message);
    }

    [Fact]
    public void Unknown_parameter_is_an_error_at_the_scalar_with_a_suggestion()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nparams: { max_length: 8 }\nstages:\n  fetch: { path: d.json }\n  tokenize: { max_length: \"${max_lenght}\" }\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal("FT0105", error.Code);
        Assert.Equal(5, error.Line);
        Assert.Contains("did you mean '${max_length}'", error.Message);
    }

    [Fact]
    public void Extends_overlays_the_variant_on_its_base_key_by_key()
    {
        using var folder = new TempFolder();
        folder.Write("base.yaml", Valid);
        var variant = folder.Write("variant.yaml", """
            extends: base.yaml
            name: variant
            params: { max_length: 128 }
            stages:
              train: { learning_rate: 1e-3 }
            """);
        var pipeline = PipelineLoader.LoadOrThrow(variant);

        Assert.Equal("variant", pipeline.Name);
        Assert.Equal(128, pipeline.Stages.Tokenize.MaxLength);     // the variant's param feeds the base's ${max_length}
        Assert.Equal(1e-3, pipeline.Stages.Train.LearningRate);    // overridden
        Assert.Equal(1.5, pipeline.Stages.Train.Epochs);           // inherited
        Assert.Equal(64, pipeline.Stages.Train.Builtin.HiddenSize); // nested sections merge too
    }

    [Fact]
    public void An_error_in_the_base_file_points_into_the_base_file()
    {
        using var folder = new TempFolder();
        var basePath = folder.Write("base.yaml", "name: b\nstages:\n  fetch: { path: d.json }\n  train: { epochs: many }\n");
        var variant = folder.Write("variant.yaml", "extends: base.yaml\nname: v\n");
        var error = Assert.Single(PipelineLoader.Load(variant).Diagnostics);
        Assert.Equal(basePath, error.File);
        Assert.Equal(4, error.Line);
    }

    [Fact]
    public void Extends_cycle_is_reported()
    {
        using var folder = new TempFolder();
        folder.Write("a.yaml", "extends: b.yaml\nname: a\n");
        var b = folder.Write("b.yaml", "extends: a.yaml\nname: b\n");
        Assert.Contains(PipelineLoader.Load(b).Diagnostics, d => d.Code == "FT0111");
    }

    [Fact]
    public void Set_overrides_apply_with_types_and_bad_values_name_the_command_line()
    {
        using var folder = new TempFolder();
        var path = folder.Write("p.yaml", Valid);
        var pipeline = PipelineLoader.LoadOrThrow(path, ["train.learning_rate=2e-4", "params.max_length=64", "evaluate.prompts=[a, b]"]);
        Assert.Equal(2e-4, pipeline.Stages.Train.LearningRate);
        Assert.Equal(64, pipeline.Stages.Tokenize.MaxLength);
        Assert.Equal(["a", "b"], pipeline.Stages.Evaluate.Prompts);

        var bad = PipelineLoader.Load(path, ["train.epochs=lots", "train.lerning_rate=1"]);
        Assert.Contains(bad.Diagnostics, d => d.Code == "FT0104" && d.Format().StartsWith("<command line> --set train.epochs"));
        Assert.Contains(bad.Diagnostics, d => d.Code == "FT0102" && d.Message.Contains("did you mean 'learning_rate'"));
        Assert.Contains(PipelineLoader.Load(path, ["nonsense"]).Diagnostics, d => d.Code == "FT0106");
    }

    [Fact]
    public void Missing_name_and_missing_file_are_errors()
    {
        using var folder = new TempFolder();
        Assert.Contains(PipelineLoader.Load(folder.Write("p.yaml", "stages:\n  fetch: { path: d.json }\n")).Diagnostics, d => d.Code == "FT0109");
        Assert.Contains(PipelineLoader.Load(Path.Combine(folder.Path, "absent.yaml")).Diagnostics, d => d.Code == "FT0100");
    }

    [Fact]
    public void Locate_finds_where_a_setting_was_written()
    {
        using var folder = new TempFolder();
        var pipeline = PipelineLoader.LoadOrThrow(folder.Write("p.yaml", Valid));
        Assert.Equal(7, pipeline.Locate("stages.fetch.path").Line);
        Assert.Equal(11, pipeline.Locate("stages.train.learning_rate").Line);
        Assert.Equal(8, pipeline.Locate("stages.tokenize.chat_template").Line); // not written: its section
    }

    [Fact]
    public void Schema_is_generated_from_the_settings_classes()
    {
        var schema = System.Text.Json.Nodes.JsonNode.Parse(PipelineSchema.Generate())!;
        var train = schema["properties"]!["stages"]!["properties"]!["train"]!;
        Assert.False(train["additionalProperties"]!.GetValue<bool>());
        Assert.Equal(0.0001, train["properties"]!["learning_rate"]!["default"]!.GetValue<double>());
        Assert.Equal(0, train["properties"]!["learning_rate"]!["exclusiveMinimum"]!.GetValue<double>());
        Assert.NotNull(train["properties"]!["builtin"]!["properties"]!["kv_heads"]);
        Assert.Equal("name", schema["required"]![0]!.GetValue<string>());
        var trainOn = schema["properties"]!["stages"]!["properties"]!["tokenize"]!["properties"]!["train_on"]!["enum"]!.AsArray();
        Assert.Equal(["assistant", "last", "all"], trainOn.Select(t => t!.GetValue<string>()));
        Assert.Equal("model", schema["properties"]!["stages"]!["properties"]!["tokenize"]!["properties"]!["chat_template"]!["default"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("chatm", "did you mean 'chatml'?")]
    [InlineData("lama3", "did you mean 'llama3'?")]
    public void An_unknown_chat_template_name_is_located_with_a_suggestion(string value, string suggestion)
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", $"""
            name: demo
            stages:
              fetch:
                path: d.json
              tokenize:
                chat_template: {value}
            """);
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(("FT0110", 6), (error.Code, error.Line));
        Assert.Contains(suggestion, error.Message);
        Assert.Contains("a .jinja file", error.Message);
        Assert.Empty(PipelineLoader.Load(folder.Write("y.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  tokenize: { chat_template: templates/mine.jinja }\n")).Diagnostics);
    }
}
