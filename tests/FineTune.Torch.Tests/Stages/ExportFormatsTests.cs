using System.Text.Json.Nodes;
using FineTune.Core.Pipeline;
using FineTune.TestKit;
using FineTune.Torch.Formats;
using FineTune.Torch.Lora;
using FineTune.Torch.Models;
using FineTune.Torch.Stages;
using FineTune.Torch.Tests.Fakes;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Stages;

/// <summary>The hf (sharded) and adapter formats of the export stage, against transformers' and PEFT's layouts.</summary>
public sealed class ExportFormatsTests : IDisposable
{
    private static readonly long[] Ids = [1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 256];

    private readonly string _root = Directory.CreateTempSubdirectory("ft-export-").FullName;
    private readonly ByteChatTokenizer _tokenizer = new();
    private readonly string _trainDir;
    private readonly string _tokenizeDir;

    public ExportFormatsTests()
    {
        _trainDir = Directory.CreateDirectory(Path.Combine(_root, "train")).FullName;
        _tokenizeDir = Directory.CreateDirectory(Path.Combine(_root, "tokenize")).FullName;
        ByteChatTokenizer.WriteFolder(Path.Combine(_tokenizeDir, "tokenizer"));
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private Dictionary<string, string> Inputs => new() { ["train"] = _trainDir, ["tokenize"] = _tokenizeDir };

    private async Task<string> Export(PipelineDefinition pipeline)
    {
        var context = Contexts.For("export", pipeline, _root, Inputs, new RecordingLog());
        await new ExportStage(_ => _tokenizer).RunAsync(context, CancellationToken.None);
        return context.OutputDirectory;
    }

    [Fact]
    public async Task A_model_above_max_shard_size_is_split_with_transformers_index()
    {
        using (var model = TinyModels.Create(tied: false)) ModelFolder.Save(model, Path.Combine(_trainDir, "model"));
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Export.Dtype = "float16";
        pipeline.Stages.Export.MaxShardSize = "20KB";

        var output = await Export(pipeline);

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "model.safetensors.index.json")))!;
        var weightMap = index["weight_map"]!.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<string>());
        var shards = weightMap.Values.Distinct().Order(StringComparer.Ordinal).ToList();
        Assert.True(shards.Count > 2);
        Assert.Equal(Enumerable.Range(1, shards.Count).Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors"), shards);
        Assert.False(File.Exists(Path.Combine(output, "model.safetensors")));

        long total = 0;
        var seen = new HashSet<string>();
        using var source = ModelFolder.Load(Path.Combine(_trainDir, "model"));
        var sourceWeights = source.state_dict();
        foreach (var shard in shards)
        {
            var header = Safetensors.ReadHeader(Path.Combine(output, shard));
            var bytes = header.Tensors.Sum(t => t.ByteSize);
            // Only a shard holding a single tensor may pass the limit (transformers does the same).
            Assert.True(bytes <= 20_000 || header.Tensors.Count == 1, $"{shard}: {bytes} bytes");
            total += bytes;
            foreach (var t in header.Tensors)
            {
                Assert.Equal("F16", t.Dtype);
                Assert.Equal(shard, weightMap[t.Name]);
                Assert.True(seen.Add(t.Name));
            }
        }
        Assert.Equal(total, index["metadata"]!["total_size"]!.GetValue<long>());
        Assert.Equal(weightMap.Keys.Order(StringComparer.Ordinal), seen.Order(StringComparer.Ordinal));

        // The sharded folder loads back, and each weight is the source weight rounded to float16.
        using var exported = ModelFolder.Load(output);
        foreach (var (name, tensor) in exported.state_dict())
            Assert.True(tensor.to(ScalarType.Float32).eq(sourceWeights[name].to(ScalarType.Float16).to(ScalarType.Float32)).all().item<bool>(), name);
        Assert.Equal("float16", JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!["torch_dtype"]!.GetValue<string>());
    }

    [Fact]
    public async Task The_adapter_folder_follows_PEFT_and_merged_logits_equal_base_plus_adapter()
    {
        var baseDir = Path.Combine(_root, "base");
        using (var baseModel = TinyModels.Create()) ModelFolder.Save(baseModel, baseDir);
        var options = new LoraOptions { R = 4, Alpha = 8, Dropout = 0.1, TargetModules = ["q_proj", "v_proj", "down_proj"] };
        using (var trained = ModelFolder.Load(baseDir))
        {
            var applied = LoraAdapter.Apply(trained, options);
            using (no_grad())
                foreach (var layer in applied.Layers.Values) layer.B.copy_(randn_like(layer.B) * 0.5f);
            LoraAdapter.SaveAdapter(trained, options, Path.Combine(_trainDir, "adapter"), "base");
            LoraAdapter.MergeAndUnload(trained);
            ModelFolder.Save(trained, Path.Combine(_trainDir, "model"));
        }
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Train.Model = "base";
        pipeline.Stages.Train.Method = "lora";
        pipeline.Stages.Export.Formats = ["hf", "adapter"];

        var output = await Export(pipeline);

        var adapter = Path.Combine(output, "adapter");
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"],
            Directory.GetFiles(adapter).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")))!;
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", config["task_type"]!.GetValue<string>());
        Assert.Equal("base", config["base_model_name_or_path"]!.GetValue<string>());
        Assert.True(config.AsObject().ContainsKey("revision"));
        Assert.Null(config["revision"]); // a local folder has no revision
        Assert.Equal(4, config["r"]!.GetValue<int>());
        Assert.Equal(8, config["lora_alpha"]!.GetValue<double>());
        Assert.Equal(0.1, config["lora_dropout"]!.GetValue<double>());
        Assert.Equal(["down_proj", "q_proj", "v_proj"],
            config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()).Order(StringComparer.Ordinal));

        // PEFT's keys: base_model.model.<module path>.lora_A.weight [r, in] and .lora_B.weight [out, r].
        var header = Safetensors.ReadHeader(Path.Combine(adapter, "adapter_model.safetensors"));
        var expected = new List<(string, long[])>();
        for (var layer = 0; layer < 2; layer++)
        {
            expected.Add(($"base_model.model.model.layers.{layer}.mlp.down_proj.lora_A.weight", [4, 48]));
            expected.Add(($"base_model.model.model.layers.{layer}.mlp.down_proj.lora_B.weight", [32, 4]));
            expected.Add(($"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_A.weight", [4, 32]));
            expected.Add(($"base_model.model.model.layers.{layer}.self_attn.q_proj.lora_B.weight", [32, 4]));
            expected.Add(($"base_model.model.model.layers.{layer}.self_attn.v_proj.lora_A.weight", [4, 32]));
            expected.Add(($"base_model.model.model.layers.{layer}.self_attn.v_proj.lora_B.weight", [16, 4]));
        }
        Assert.Equal(expected.Select(e => e.Item1).Order(StringComparer.Ordinal), header.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var (name, shape) in expected)
        {
            Assert.Equal(shape, header[name]!.Shape);
            Assert.Equal("F32", header[name]!.Dtype);
        }

        using var unmerged = ModelFolder.Load(baseDir);
        LoraAdapter.LoadAdapter(unmerged, adapter);
        unmerged.eval();
        using var merged = ModelFolder.Load(output);
        var difference = (TinyModels.LogitsOf(unmerged, Ids) - TinyModels.LogitsOf(merged, Ids)).abs().max().item<float>();
        var scale = TinyModels.LogitsOf(merged, Ids).abs().max().item<float>();
        Assert.True(difference <= 1e-5 * Math.Max(1, scale), $"max |merged - unmerged| = {difference} (logits up to {scale})");
    }

    [Fact]
    public async Task Without_hf_only_the_asked_formats_are_written()
    {
        var baseDir = Path.Combine(_root, "base");
        using (var baseModel = TinyModels.Create()) ModelFolder.Save(baseModel, baseDir);
        using (var trained = ModelFolder.Load(baseDir))
        {
            var options = new LoraOptions { R = 2, TargetModules = ["q_proj"] };
            LoraAdapter.Apply(trained, options);
            LoraAdapter.SaveAdapter(trained, options, Path.Combine(_trainDir, "adapter"), "base");
            LoraAdapter.MergeAndUnload(trained);
            ModelFolder.Save(trained, Path.Combine(_trainDir, "model"));
        }
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Train.Model = "base";
        pipeline.Stages.Train.Method = "lora";
        pipeline.Stages.Export.Formats = ["adapter"];

        var output = await Export(pipeline);

        Assert.Empty(Directory.GetFiles(output));
        Assert.True(File.Exists(Path.Combine(output, "adapter", "adapter_model.safetensors")));
    }

    [Fact]
    public async Task Gguf_and_ollama_write_the_file_and_its_Modelfile_beside_it()
    {
        var tokenizer = FineTune.Core.Tokenization.ChatTokenizer.LoadGpt2("qwen2.5");
        var tokenizerDir = Path.Combine(_tokenizeDir, "tokenizer");
        Directory.Delete(tokenizerDir, recursive: true);
        tokenizer.WriteFiles(tokenizerDir, 256);
        using (var model = new LlamaForCausalLM(TinyModels.Config(tied: true) with { VocabSize = tokenizer.VocabSize }))
            ModelFolder.Save(model, Path.Combine(_trainDir, "model"));
        var pipeline = new PipelineDefinition { Name = "test" };
        pipeline.Stages.Export.Formats = ["ollama"];
        pipeline.Stages.Export.GgufType = "Q8_0";
        pipeline.Stages.Evaluate.Temperature = 0.3;
        var log = new RecordingLog();
        var context = Contexts.For("export", pipeline, _root, Inputs, log);

        await new ExportStage().RunAsync(context, CancellationToken.None);

        var output = context.OutputDirectory;
        Assert.Empty(Directory.GetFiles(output)); // no hf asked for
        Assert.Equal(["Modelfile", "model-Q8_0.gguf"],
            Directory.GetFiles(Path.Combine(output, "gguf")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var modelfile = File.ReadAllLines(Path.Combine(output, "gguf", "Modelfile"));
        Assert.Contains("FROM ./model-Q8_0.gguf", modelfile);
        Assert.Contains(modelfile, l => l.StartsWith("SYSTEM \"\"\"You are Qwen", StringComparison.Ordinal));
        Assert.Contains("PARAMETER stop \"<|im_end|>\"", modelfile);
        Assert.Contains("PARAMETER temperature 0.3", modelfile);
        // hidden 32 and intermediate 48: ffn_down's 48-value rows stay F16, and the log says so.
        Assert.Contains(log.Lines, l => l.StartsWith("warning:") && l.Contains("blk.0.ffn_down.weight"));
        Assert.Equal("gguf,ollama", context.Summary["formats"]);
    }

    /// <summary>A pipeline file whose export section is on line 6, as a user wrote it, with the stage's inputs.</summary>
    private PipelineDefinition PipelineFile(string train, string export, string tokenize = "{}")
    {
        var path = Path.Combine(_root, "pipeline.yaml");
        File.WriteAllText(path, $"name: test\nstages:\n  fetch: {{ path: d.json }}\n  tokenize: {tokenize}\n  train: {train}\n  export: {export}\n");
        var loaded = PipelineLoader.Load(path);
        Assert.Empty(loaded.Diagnostics); // what only the trained model shows is the stage's to find
        return loaded.Pipeline!;
    }

    private async Task<FineTune.Core.Diagnostics.FineTuneException> ExportFails(PipelineDefinition pipeline,
        bool fakeTokenizer = false)
    {
        var context = Contexts.For("export", pipeline, _root, Inputs, new RecordingLog());
        var stage = fakeTokenizer ? new ExportStage(_ => _tokenizer) : new ExportStage();
        var error = await Assert.ThrowsAsync<FineTune.Core.Diagnostics.FineTuneException>(
            () => stage.RunAsync(context, CancellationToken.None));
        Assert.Equal(2, error.ExitCode);
        Assert.Equal((Path.Combine(_root, "pipeline.yaml"), 6), (error.Diagnostics[0].File, error.Diagnostics[0].Line));
        Assert.Empty(Directory.GetFileSystemEntries(context.OutputDirectory)); // stopped before writing anything
        return error;
    }

    private void SaveTrainedModel(string modelType, int vocabSize = 256)
    {
        var model = Path.Combine(_trainDir, "model");
        using (var tiny = new LlamaForCausalLM(TinyModels.Config(tied: true) with { VocabSize = vocabSize }))
            ModelFolder.Save(tiny, model);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!;
        config["model_type"] = modelType;
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
    }

    private int UseGpt2Tokenizer(string chatTemplate)
    {
        var tokenizer = FineTune.Core.Tokenization.ChatTokenizer.LoadGpt2(chatTemplate);
        var tokenizerDir = Path.Combine(_tokenizeDir, "tokenizer");
        Directory.Delete(tokenizerDir, recursive: true);
        tokenizer.WriteFiles(tokenizerDir, 256);
        return tokenizer.VocabSize;
    }

    [Fact]
    public async Task A_gguf_of_a_model_type_known_only_after_training_stops_before_writing()
    {
        // A Hub model's type is known once fetched, so validate cannot see it; the stage must.
        SaveTrainedModel("mistral", UseGpt2Tokenizer("chatml"));
        var error = await ExportFails(PipelineFile("{ method: full }", "{ formats: [hf, gguf] }"));
        Assert.Equal("FT0723", error.Diagnostics[0].Code);
        Assert.Contains("mistral model", error.Diagnostics[0].Message);
    }

    [Fact]
    public async Task An_adapter_export_of_a_train_output_without_adapter_stops_before_writing()
    {
        SaveTrainedModel("llama");
        var error = await ExportFails(PipelineFile("{ method: lora }", "{ formats: [hf, adapter] }"),
            fakeTokenizer: true);
        Assert.Equal("FT0724", error.Diagnostics[0].Code);
    }

    [Fact]
    public async Task A_tokenizer_gguf_cannot_carry_stops_before_writing()
    {
        SaveTrainedModel("llama"); // beside the fake byte tokenizer, whose tokenizer.json is not BPE
        var error = await ExportFails(PipelineFile("{ method: full }", "{ formats: [hf, gguf] }"),
            fakeTokenizer: true);
        Assert.Equal("FT0725", error.Diagnostics[0].Code);
        Assert.Contains("not BPE", error.Diagnostics[0].Message);
    }

    [Fact]
    public async Task A_chat_template_Ollama_cannot_express_stops_before_writing_unless_the_fallback_is_asked_for()
    {
        // The template comes from the model's tokenizer (chat_template: model), so only the stage sees it.
        SaveTrainedModel("llama", UseGpt2Tokenizer("alpaca"));
        var error = await ExportFails(PipelineFile("{ method: full }", "{ formats: [hf, ollama] }"));
        Assert.Equal("FT0727", error.Diagnostics[0].Code);
        Assert.Contains("ollama_fallback: true", error.Diagnostics[0].Message);

        var log = new RecordingLog();
        var context = Contexts.For("export", PipelineFile("{ method: full }", "{ formats: [ollama], ollama_fallback: true }"),
            _root, Inputs, log);
        await new ExportStage().RunAsync(context, CancellationToken.None);
        Assert.Contains(log.Warnings, w => w.StartsWith("FT0726", StringComparison.Ordinal));
        Assert.Contains("# FT0726", File.ReadAllText(Path.Combine(context.OutputDirectory, "gguf", "Modelfile")));
    }
}
