using FineTune.Core.Pipeline;
using FineTune.TestKit;

namespace FineTune.Core.Tests.Pipeline;

public class ExportChecksTests
{
    [Fact]
    public void An_adapter_export_after_a_full_fine_tune_is_a_located_error()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml",
            "name: demo\nstages:\n  fetch: { path: d.json }\n  train: { method: full }\n  export:\n    formats: [hf, adapter]\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(("FT0722", 6), (error.Code, error.Line));
        Assert.Contains("method: lora", error.Message);
    }

    [Fact]
    public void Gguf_of_a_local_model_of_another_architecture_is_a_located_error()
    {
        using var folder = new TempFolder();
        folder.Write("m/config.json", """{"model_type": "gemma2"}""");
        var path = folder.Write("x.yaml",
            "name: demo\nstages:\n  fetch: { path: d.json }\n  train: { model: m, method: lora }\n  export: { formats: [ollama] }\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(("FT0723", 5), (error.Code, error.Line));
        Assert.Contains("gemma2", error.Message);
    }

    [Theory]
    [InlineData("alpaca", false, "FT0727")]
    [InlineData("mistral", false, "FT0727")]
    [InlineData("alpaca", true, null)]
    [InlineData("chatml", false, null)]
    public void An_ollama_export_of_a_built_in_template_Ollama_cannot_express_is_a_located_error(string template,
        bool fallback, string? code)
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n" +
            $"  tokenize: {{ chat_template: {template} }}\n  export:\n    formats: [hf, ollama]\n" +
            $"    ollama_fallback: {(fallback ? "true" : "false")}\n");
        var diagnostics = PipelineLoader.Load(path).Diagnostics;
        Assert.Equal(code is null ? [] : [(code, 6)], diagnostics.Select(d => (d.Code, d.Line)));
    }

    [Fact]
    public void Unknown_formats_and_shard_sizes_are_located_errors()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml",
            "name: demo\nstages:\n  fetch: { path: d.json }\n  export:\n    formats: [hf, ggfu]\n    max_shard_size: 5 parsecs\n");
        var diagnostics = PipelineLoader.Load(path).Diagnostics;
        Assert.Equal([("FT0720", 5), ("FT0721", 6)], diagnostics.Select(d => (d.Code, d.Line)).Order());
        Assert.Contains("did you mean 'gguf'", diagnostics.Single(d => d.Code == "FT0720").Message);
    }

    [Fact]
    public void An_unknown_gguf_type_is_a_located_error()
    {
        using var folder = new TempFolder();
        var path = folder.Write("x.yaml", "name: demo\nstages:\n  fetch: { path: d.json }\n  export: { gguf_type: Q4_K }\n");
        var error = Assert.Single(PipelineLoader.Load(path).Diagnostics);
        Assert.Equal(4, error.Line);
        Assert.Contains("Q8_0", error.Message);
    }

    [Theory]
    [InlineData("5GB", 5_000_000_000L)]
    [InlineData("500MiB", 524_288_000L)]
    [InlineData("10kb", 10_000L)]
    [InlineData("123", 123L)]
    public void Shard_sizes_read_as_transformers_reads_them(string text, long bytes)
    {
        Assert.True(ByteSize.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }
}
