using FineTune.Core.Tokenization;
using FineTune.Torch.Formats.Gguf;
using FineTune.Torch.Generation;
using FineTune.Torch.Models;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Torch.Tests.Formats;

/// <summary>
/// GGUF export of small llama, qwen2 and qwen3 models, read back by a reader written from the specification and run
/// by llama.cpp (LLamaSharp), whose greedy tokens and log-probabilities are compared with the tool's own.
/// </summary>
public sealed class GgufExportTests(ITestOutputHelper output) : IDisposable
{
    // Measured (see the test output): F32 differs from the tool's float32 forward pass by ~1e-5 in log-probability,
    // Q8_0 by up to ~0.1 on these deliberately sharp (x10) random models; the bounds leave a margin.
    private const double F32Tolerance = 1e-3;
    private const double Q8Tolerance = 0.5;

    private readonly string _root = Directory.CreateTempSubdirectory("ft-gguf-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static readonly Lazy<ChatTokenizer> Gpt2 = new(() => ChatTokenizer.LoadGpt2("chatml"));

    private (string Model, string Tokenizer, LlamaForCausalLM Torch) Build(string arch, int intermediate = 96)
    {
        var tokenizer = Gpt2.Value;
        var config = new LlamaConfig
        {
            ModelType = arch,
            VocabSize = tokenizer.VocabSize,
            HiddenSize = 64,
            IntermediateSize = intermediate,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            NumKeyValueHeads = 2,
            MaxPositionEmbeddings = 256,
            RopeTheta = 10000,
            RmsNormEps = 1e-6,
            TieWordEmbeddings = arch != "llama",
            AttentionBias = arch == "qwen2",
        };
        var model = new LlamaForCausalLM(config);
        model.InitializeWeights(7);
        manual_seed(7);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (!name.EndsWith("norm.weight")) p.mul_(10);
                else p.add_(rand_like(p) * 0.5f); // norms away from 1 so a misplaced one shows
        model.eval();
        var modelDir = Path.Combine(_root, arch + "-model");
        ModelFolder.Save(model, modelDir);
        var tokenizerDir = Path.Combine(_root, "tokenizer");
        if (!Directory.Exists(tokenizerDir)) tokenizer.WriteFiles(tokenizerDir, 256);
        return (modelDir, tokenizerDir, model);
    }

    private string Export(string arch, (string Model, string Tokenizer, LlamaForCausalLM _) built, string type,
        out GgufExportResult result)
    {
        var path = Path.Combine(_root, $"{arch}-{type}.gguf");
        result = GgufModelExport.Write(built.Model, built.Tokenizer, path, GgufModelExport.ParseType(type), "test",
            Gpt2.Value.StopTokenIds);
        return path;
    }

    private static readonly int[] Prompt = [.. Gpt2.Value.EncodeConversation([new("user", "Hello, who are you?")], true)];

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    [InlineData("qwen3")]
    public void Llama_cpp_runs_the_F32_export_with_the_tool_greedy_tokens(string arch)
    {
        var built = Build(arch);
        using var torchModel = built.Torch;
        var path = Export(arch, built, "F32", out _);
        using var llama = new LlamaCpp(path);

        Assert.Equal(Gpt2.Value.VocabSize, llama.VocabSize);
        var expected = TextGenerator.GenerateIds(torchModel, Prompt, new GenerationOptions(MaxNewTokens: 12));
        var actual = llama.Greedy(Prompt, 12);
        Assert.Equal(expected, actual);

        var difference = MaxLogProbDifference(torchModel, llama, [.. Prompt, .. expected]);
        output.WriteLine($"{arch} F32: max |log p(llama.cpp) - log p(tool)| = {difference:E2}");
        Assert.True(difference < F32Tolerance, $"{difference}");
    }

    [Theory]
    [InlineData("llama", 96)]
    [InlineData("qwen2", 96)]
    [InlineData("qwen3", 48)]
    public void Llama_cpp_runs_the_Q8_0_export_within_the_measured_tolerance(string arch, int intermediate)
    {
        var built = Build(arch, intermediate);
        using var torchModel = built.Torch;
        var path = Export(arch, built, "Q8_0", out var result);
        using var llama = new LlamaCpp(path);

        // 48-value rows of ffn_down cannot form 32-value blocks: those tensors fall back to F16, and only those.
        Assert.Equal(intermediate % 32 == 0 ? [] : ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"], result.Fallbacks);
        var gguf = GgufFile.Read(path);
        Assert.Equal(8u, gguf.Tensor("blk.0.attn_q.weight").Type);
        Assert.Equal(intermediate % 32 == 0 ? 8u : 1u, gguf.Tensor("blk.0.ffn_down.weight").Type);
        Assert.Equal(0u, gguf.Tensor("blk.0.attn_norm.weight").Type);
        Assert.Equal(7u, gguf.Metadata["general.file_type"]);

        var sequence = TextGenerator.GenerateIds(torchModel, Prompt, new GenerationOptions(MaxNewTokens: 12));
        var difference = MaxLogProbDifference(torchModel, llama, [.. Prompt, .. sequence]);
        output.WriteLine($"{arch} Q8_0: max |log p(llama.cpp) - log p(tool)| = {difference:E2}");
        Assert.True(difference < Q8Tolerance, $"{difference}");
    }

    /// <summary>Largest difference of the next-token log-probabilities of the actual next tokens.</summary>
    private static double MaxLogProbDifference(LlamaForCausalLM model, LlamaCpp llama, int[] ids)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var torchLogits = model.Logits(model.Hidden(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length])))
            .squeeze(0);
        var torchLogProbs = nn.functional.log_softmax(torchLogits, 1);
        var llamaLogits = llama.Logits(ids);
        double worst = 0;
        for (var t = 0; t + 1 < ids.Length; t++)
        {
            var row = tensor(llamaLogits[t]);
            var llamaLogProb = nn.functional.log_softmax(row, 0)[ids[t + 1]].item<float>();
            worst = Math.Max(worst, Math.Abs(llamaLogProb - torchLogProbs[t, ids[t + 1]].item<float>()));
        }
        return worst;
    }

    [Fact]
    public void The_file_follows_the_GGUF_specification_and_llama_cpp_names()
    {
        var built = Build("llama");
        using var torchModel = built.Torch;
        var path = Export("llama", built, "F16", out _);
        var gguf = GgufFile.Read(path);

        Assert.Equal(3u, gguf.Version);
        Assert.Equal(32u, gguf.Metadata["general.alignment"]);
        Assert.Equal(0, gguf.DataStart % 32);
        Assert.All(gguf.Tensors, t => Assert.Equal(0UL, t.Offset % 32));
        Assert.Equal("llama", gguf.Metadata["general.architecture"]);
        Assert.Equal(1u, gguf.Metadata["general.file_type"]);
        Assert.Equal(64u, gguf.Metadata["llama.embedding_length"]);
        Assert.Equal(2u, gguf.Metadata["llama.block_count"]);
        Assert.Equal(96u, gguf.Metadata["llama.feed_forward_length"]);
        Assert.Equal(4u, gguf.Metadata["llama.attention.head_count"]);
        Assert.Equal(2u, gguf.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal(16u, gguf.Metadata["llama.rope.dimension_count"]);
        Assert.Equal(256u, gguf.Metadata["llama.context_length"]);
        Assert.Equal(10000f, gguf.Metadata["llama.rope.freq_base"]);
        Assert.Equal(1e-6f, gguf.Metadata["llama.attention.layer_norm_rms_epsilon"]);

        string[] perBlock = ["attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
            "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"];
        string[] expectedNames = ["token_embd.weight", .. Enumerable.Range(0, 2).SelectMany(i => perBlock.Select(p => $"blk.{i}.{p}")),
            "output_norm.weight", "output.weight"];
        Assert.Equal(expectedNames.Order(StringComparer.Ordinal), gguf.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        // ggml lists dimensions innermost first: token_embd is [hidden, vocab], ffn_down [intermediate, hidden].
        Assert.Equal([64UL, (ulong)Gpt2.Value.VocabSize], gguf.Tensor("token_embd.weight").Dims);
        Assert.Equal([96UL, 64UL], gguf.Tensor("blk.0.ffn_down.weight").Dims);
        Assert.Equal(1u, gguf.Tensor("blk.0.ffn_down.weight").Type);
        Assert.Equal(0u, gguf.Tensor("blk.0.ffn_norm.weight").Type);
        var offsets = gguf.Tensors.Select(t => t.Offset).ToList();
        Assert.Equal(offsets.Order(), offsets); // laid out in order, none overlapping
        var fileLength = new FileInfo(path).Length;
        var lastTensor = gguf.Tensors[^1];
        Assert.True(gguf.DataStart + (long)lastTensor.Offset + 2 * (long)lastTensor.Dims.Aggregate(1UL, (a, b) => a * b) <= fileLength);

        // Tokenizer: the GPT-2 vocabulary with ChatML's specials as control tokens, and the training template.
        var tokens = (object[])gguf.Metadata["tokenizer.ggml.tokens"];
        var types = (object[])gguf.Metadata["tokenizer.ggml.token_type"];
        Assert.Equal("gpt2", gguf.Metadata["tokenizer.ggml.model"]);
        Assert.Equal("gpt-2", gguf.Metadata["tokenizer.ggml.pre"]);
        Assert.Equal(Gpt2.Value.VocabSize, tokens.Length);
        Assert.Equal("Ġthe", tokens[262]);
        Assert.Equal(1, types[262]);
        var imEnd = Gpt2.Value.StopTokenIds[0];
        Assert.Equal("<|im_end|>", tokens[imEnd]);
        Assert.Equal(3, types[imEnd]);
        Assert.Equal((uint)imEnd, gguf.Metadata["tokenizer.ggml.eot_token_id"]);
        Assert.Equal("Ġ t", ((object[])gguf.Metadata["tokenizer.ggml.merges"])[0]);
        Assert.Equal(false, gguf.Metadata["tokenizer.ggml.add_bos_token"]);
        Assert.Contains("<|im_start|>", (string)gguf.Metadata["tokenizer.chat_template"]);
        // The ids of the tokenizer_config.json written beside the model: ChatML's <|im_end|> ends a sequence there, and
        // GPT-2's <|endoftext|> (id 50256) begins one.
        var tokenizerConfig = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(built.Tokenizer, "tokenizer_config.json")))!;
        uint IdOf(string key) => (uint)Array.IndexOf(tokens, (object)(string)tokenizerConfig[key]!);
        Assert.Equal("<|im_end|>", (string)tokenizerConfig["eos_token"]!);
        Assert.Equal(IdOf("eos_token"), gguf.Metadata["tokenizer.ggml.eos_token_id"]);
        if (tokenizerConfig["bos_token"] is not null) Assert.Equal(IdOf("bos_token"), gguf.Metadata["tokenizer.ggml.bos_token_id"]);
        var padding = tokenizerConfig["pad_token"] is null ? IdOf("eos_token") : IdOf("pad_token");
        Assert.Equal(padding, gguf.Metadata["tokenizer.ggml.padding_token_id"]);
    }

    [Fact]
    public void Bf16_tensors_hold_the_upper_16_bits_of_each_rounded_float32()
    {
        var built = Build("qwen2");
        using var torchModel = built.Torch;
        var path = Export("qwen2", built, "BF16", out _);
        var gguf = GgufFile.Read(path);
        Assert.Equal(32u, gguf.Metadata["general.file_type"]); // LLAMA_FTYPE_MOSTLY_BF16
        var tensor = gguf.Tensor("blk.0.ffn_up.weight");
        Assert.Equal(30u, tensor.Type); // GGML_TYPE_BF16
        Assert.Equal(0u, gguf.Tensor("blk.0.ffn_norm.weight").Type); // norms stay F32, as llama.cpp's converter keeps them
        // bfloat16 is a float32's upper 16 bits after rounding to nearest, ties to even (no NaN among weights).
        static ushort Bfloat16Bits(float value)
        {
            var bits = BitConverter.SingleToUInt32Bits(value);
            return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        }
        var source = built.Torch.state_dict()["model.layers.0.mlp.up_proj.weight"].to(ScalarType.Float32).contiguous();
        var expected = source.data<float>().ToArray().Select(Bfloat16Bits).ToArray();
        var bytes = File.ReadAllBytes(path);
        var start = gguf.DataStart + (long)tensor.Offset;
        var actual = Enumerable.Range(0, expected.Length)
            .Select(i => BitConverter.ToUInt16(bytes, (int)(start + 2L * i))).ToArray();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void Llama_q_and_k_rows_are_interleaved_per_head_as_the_converter_does()
    {
        var built = Build("llama");
        using var torchModel = built.Torch;
        var gguf = GgufFile.Read(Export("llama", built, "F32", out _));
        var weights = torchModel.state_dict();
        foreach (var (name, key, heads) in new[] { ("attn_q", "q_proj", 4), ("attn_k", "k_proj", 2) })
        {
            var source = weights[$"model.layers.1.self_attn.{key}.weight"].data<float>().ToArray();
            var written = gguf.F32($"blk.1.{name}.weight");
            const int headDim = 16, columns = 64;
            // Row h*d + 2i comes from h*d + i, row h*d + 2i + 1 from h*d + d/2 + i.
            for (var h = 0; h < heads; h++)
                for (var i = 0; i < headDim / 2; i++)
                    for (var c = 0; c < columns; c++)
                    {
                        Assert.Equal(source[(h * headDim + i) * columns + c], written[(h * headDim + 2 * i) * columns + c]);
                        Assert.Equal(source[(h * headDim + headDim / 2 + i) * columns + c], written[(h * headDim + 2 * i + 1) * columns + c]);
                    }
        }
        // v is not rotated and stays as it is.
        Assert.Equal(weights["model.layers.1.self_attn.v_proj.weight"].data<float>().ToArray(), gguf.F32("blk.1.attn_v.weight"));
    }

    [Fact]
    public void Q8_0_blocks_are_a_float16_scale_and_32_rounded_int8_values()
    {
        float[] values = [.. Enumerable.Range(0, 64).Select(i => (i - 20) * 0.25f)];
        using var stream = new MemoryStream();
        Q8_0.Write(stream, tensor(values, [2, 32]));
        var bytes = stream.ToArray();
        Assert.Equal(2 * 34, bytes.Length);
        // Block 0 holds -5.0 .. 2.75: d = 5 / 127, so -5.0 is -127 and 0.25 is round(6.35) = 6; an error is at most d / 2
        // (block 1: 10.75 / 254 = 0.042) plus the scale's float16 rounding.
        Assert.Equal((Half)(5f / 127), BitConverter.ToHalf(bytes, 0));
        Assert.Equal(-127, (sbyte)bytes[2]);
        Assert.Equal(6, (sbyte)bytes[2 + 21]);
        var back = Q8_0.Dequantize(bytes);
        for (var i = 0; i < values.Length; i++) Assert.True(Math.Abs(back[i] - values[i]) <= 0.045f, $"{i}: {back[i]} vs {values[i]}");
    }

    [Fact]
    public void Q8_0_of_many_blocks_equals_llama_cpp_reference_quantizer_block_by_block()
    {
        // More than one slice of blocks (65,536) and a partial one, with ties (x / d = k + 0.5) and an all-zero block.
        const int blocks = 70_001;
        var generator = new Random(3);
        var values = new float[blocks * 32];
        for (var i = 0; i < values.Length; i++) values[i] = (float)(generator.NextDouble() * 2 - 1) * (1 + i % 7);
        for (var i = 0; i < 32; i++) values[32 + i] = i == 0 ? 127f : (i % 2 == 0 ? 2.5f : -3.5f); // d = 1: ties
        Array.Clear(values, 64, 32);
        using var stream = new MemoryStream();
        Q8_0.Write(stream, tensor(values, [blocks, 32]));
        var bytes = stream.ToArray();
        Assert.Equal(blocks * 34, bytes.Length);

        // ggml-quants.c quantize_row_q8_0_ref, written out: amax, d = amax / 127, id = d ? 1/d : 0, roundf(x * id).
        for (var b = 0; b < blocks; b++)
        {
            var amax = 0f;
            for (var i = 0; i < 32; i++) amax = Math.Max(amax, Math.Abs(values[b * 32 + i]));
            var d = amax / 127f;
            var id = d != 0 ? 1f / d : 0f;
            Assert.Equal((Half)d, BitConverter.ToHalf(bytes, b * 34));
            for (var i = 0; i < 32; i++)
            {
                var expected = (sbyte)MathF.Round(values[b * 32 + i] * id, MidpointRounding.AwayFromZero);
                if ((sbyte)bytes[b * 34 + 2 + i] != expected)
                    Assert.Fail($"block {b} value {i}: {(sbyte)bytes[b * 34 + 2 + i]}, expected {expected}");
            }
        }
        Assert.Equal([127, 3, -4, 3], new[] { 0, 2, 1, 4 }.Select(i => (int)(sbyte)bytes[34 + 2 + i]));
        // The scalar path (CPUs without 256-bit vectors) writes the same bytes.
        Assert.Equal(bytes, Q8_0.QuantizeScalar(values));
    }
}
