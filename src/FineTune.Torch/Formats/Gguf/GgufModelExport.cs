using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Formats.Gguf;

/// <summary>What a GGUF export wrote: the file, and the tensors that could not take the asked type.</summary>
internal sealed record GgufExportResult(string Path, IReadOnlyList<string> Fallbacks, long TensorCount);

/// <summary>
/// A GGUF file ready to be written: its metadata read and checked (architecture, tokenizer), its tensors named and
/// typed, their data read only by <see cref="Write"/>. Preparing first lets an export find what GGUF cannot carry
/// before it writes anything.
/// </summary>
internal sealed class PreparedGguf(GgufWriter writer, IReadOnlyList<string> fallbacks)
{
    /// <summary>Tensors that stay F16 under Q8_0, their rows not being a multiple of the block size.</summary>
    public IReadOnlyList<string> Fallbacks => fallbacks;

    public GgufExportResult Write(string path)
    {
        writer.Write(path);
        return new GgufExportResult(path, fallbacks, writer.Tensors.Count);
    }
}

/// <summary>
/// A Hugging Face checkpoint of a llama, qwen2 or qwen3 model as a GGUF file that llama.cpp loads: the tensor names
/// and layouts of llama.cpp's <c>convert_hf_to_gguf.py</c> (for <c>llama</c> the q and k rows permuted from
/// transformers' rotate-half RoPE to ggml's interleaved one; qwen2/qwen3 use the NeoX RoPE and stay as they are), the
/// <c>general.*</c> and <c>&lt;arch&gt;.*</c> hyper-parameters, and the tokenizer (<see cref="GgufTokenizer"/>).
/// Vectors (norms, biases) stay F32 as the converter keeps them; matrices take the asked type, and a matrix whose
/// rows are not a multiple of 32 values falls back from Q8_0 to F16, as the converter does.
/// </summary>
internal static partial class GgufModelExport
{
    public static string FileName(string ggufType) => $"model-{ggufType}.gguf";

    public static GgmlType ParseType(string ggufType) => ggufType switch
    {
        "F32" => GgmlType.F32,
        "F16" => GgmlType.F16,
        "BF16" => GgmlType.BF16,
        "Q8_0" => GgmlType.Q8_0,
        _ => throw new ArgumentException($"unknown gguf_type '{ggufType}'", nameof(ggufType)),
    };

    // llama.cpp's llama_ftype: what general.file_type says the file mostly holds.
    private static uint FileType(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q8_0 => 7,
        GgmlType.BF16 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static GgufExportResult Write(string modelDirectory, string tokenizerDirectory, string path, GgmlType type,
        string name, IReadOnlyList<int> stopTokenIds, CancellationToken cancellationToken = default) =>
        Prepare(modelDirectory, tokenizerDirectory, type, name, stopTokenIds, cancellationToken).Write(path);

    public static PreparedGguf Prepare(string modelDirectory, string tokenizerDirectory, GgmlType type, string name,
        IReadOnlyList<int> stopTokenIds, CancellationToken cancellationToken = default)
    {
        var config = ModelFolder.ReadConfig(modelDirectory);
        var arch = config.ModelType;
        if (arch is not ("llama" or "qwen2" or "qwen3"))
            throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.GgufUnsupportedArchitecture,
                $"the GGUF writer supports llama, qwen2 and qwen3 models, not {arch}", modelDirectory));
        var writer = new GgufWriter();
        writer.Add("general.architecture", arch);
        writer.Add("general.type", "model");
        writer.Add("general.name", name);
        writer.Add("general.file_type", FileType(type));
        writer.Add("general.quantization_version", 2u);
        writer.Add("general.alignment", (uint)GgufWriter.Alignment);
        writer.Add($"{arch}.vocab_size", (uint)config.VocabSize);
        writer.Add($"{arch}.context_length", (uint)config.MaxPositionEmbeddings);
        writer.Add($"{arch}.embedding_length", (uint)config.HiddenSize);
        writer.Add($"{arch}.block_count", (uint)config.NumHiddenLayers);
        writer.Add($"{arch}.feed_forward_length", (uint)config.IntermediateSize);
        writer.Add($"{arch}.attention.head_count", (uint)config.NumAttentionHeads);
        writer.Add($"{arch}.attention.head_count_kv", (uint)config.NumKeyValueHeads);
        writer.Add($"{arch}.attention.key_length", (uint)config.HeadDim);
        writer.Add($"{arch}.attention.value_length", (uint)config.HeadDim);
        writer.Add($"{arch}.rope.dimension_count", (uint)config.HeadDim);
        writer.Add($"{arch}.rope.freq_base", (float)config.RopeTheta);
        writer.Add($"{arch}.attention.layer_norm_rms_epsilon", (float)config.RmsNormEps);
        if (config.RopeScaling is { RopeType: "linear" } linear)
        {
            writer.Add($"{arch}.rope.scaling.type", "linear");
            writer.Add($"{arch}.rope.scaling.factor", (float)linear.Factor);
        }
        GgufTokenizer.AddTo(writer, tokenizerDirectory, config.VocabSize, stopTokenIds);

        var sources = ModelFolder.WeightFiles(modelDirectory)
            .Select(file => (File: file, Header: Safetensors.ReadHeader(file)))
            .SelectMany(f => f.Header.Tensors.Select(entry => (f.File, f.Header, Entry: entry)))
            .ToDictionary(t => t.Entry.Name, StringComparer.Ordinal);
        var fallbacks = new List<string>();
        foreach (var (hfName, (file, header, entry)) in sources.OrderBy(s => Order(s.Key)).ThenBy(s => s.Key,
            StringComparer.Ordinal))
        {
            var ggufName = GgufName(hfName)
                ?? throw new FineTuneException(Diagnostic.Error(DiagnosticCodes.GgufUnsupportedArchitecture,
                    $"the checkpoint holds '{hfName}', which has no llama.cpp tensor for {arch}", file));
            var tensorType = entry.Shape.Length < 2 ? GgmlType.F32 : type;
            if (tensorType == GgmlType.Q8_0 && !Q8_0.CanQuantize(entry.Shape))
            {
                tensorType = GgmlType.F16;
                fallbacks.Add(ggufName);
            }
            var permuteHeads = arch != "llama" ? 0
                : hfName.EndsWith(".self_attn.q_proj.weight", StringComparison.Ordinal)
                    || hfName.EndsWith(".self_attn.q_proj.bias", StringComparison.Ordinal) ? config.NumAttentionHeads
                : hfName.EndsWith(".self_attn.k_proj.weight", StringComparison.Ordinal)
                    || hfName.EndsWith(".self_attn.k_proj.bias", StringComparison.Ordinal) ? config.NumKeyValueHeads
                : 0;
            var finalType = tensorType;
            writer.AddTensor(new GgufTensor(ggufName, entry.Shape, finalType, stream =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                if (permuteHeads == 0)
                {
                    // Row slices: each type writes rows independently, so the bytes are those of the whole tensor.
                    foreach (var slice in Safetensors.ReadRowSlices(file, header, entry, Safetensors.SliceBytes))
                        WriteAs(stream, slice, finalType);
                    return;
                }
                var loaded = Safetensors.Load(file, n => n == hfName)[hfName];
                var weights = permuteHeads > 0 ? PermuteForInterleavedRope(loaded, permuteHeads) : loaded;
                WriteAs(stream, weights, finalType);
            }));
        }
        if (config.RopeScaling is { RopeType: "llama3" } llama3)
        {
            var factors = Llama3RopeFactors(config, llama3);
            writer.AddTensor(new GgufTensor("rope_freqs.weight", [factors.Length], GgmlType.F32, stream =>
            {
                foreach (var f in factors) stream.Write(BitConverter.GetBytes(f));
            }));
        }
        return new PreparedGguf(writer, fallbacks);
    }

    /// <summary>llama.cpp's name of a transformers weight, or null when llama.cpp has none.</summary>
    public static string? GgufName(string hfName)
    {
        switch (hfName)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var match = LayerKey().Match(hfName);
        if (!match.Success) return null;
        var part = match.Groups["part"].Value switch
        {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => null,
        };
        return part is null ? null : $"blk.{match.Groups["layer"].Value}.{part}.{match.Groups["kind"].Value}";
    }

    [GeneratedRegex(@"^model\.layers\.(?<layer>\d+)\.(?<part>.+)\.(?<kind>weight|bias)$")]
    private static partial Regex LayerKey();

    // Embedding first, then the blocks in numeric order, then the output norm and head, as the converter lists them.
    private static (int, int) Order(string hfName)
    {
        if (hfName.StartsWith("model.embed_tokens", StringComparison.Ordinal)) return (0, 0);
        var match = LayerKey().Match(hfName);
        return match.Success ? (1, int.Parse(match.Groups["layer"].Value, System.Globalization.CultureInfo.InvariantCulture))
            : (2, 0);
    }

    /// <summary>
    /// transformers' Llama rotates the two halves of each head (rotate_half); ggml's LLAMA RoPE rotates adjacent
    /// pairs. The converter reorders each head's rows from [x0..x(d/2-1), y0..] to [x0, y0, x1, y1, ...]:
    /// reshape(heads, 2, d/2, ...) then swap the middle axes.
    /// </summary>
    public static Tensor PermuteForInterleavedRope(Tensor weights, int heads)
    {
        var rows = weights.shape[0];
        long[] split = [heads, 2, rows / heads / 2, .. weights.shape.Skip(1)];
        return weights.reshape(split).transpose(1, 2).reshape(weights.shape).contiguous();
    }

    private static void WriteAs(Stream stream, Tensor weights, GgmlType type)
    {
        if (type == GgmlType.Q8_0)
        {
            Q8_0.Write(stream, weights);
            return;
        }
        var converted = type switch
        {
            GgmlType.F32 => weights.to(ScalarType.Float32),
            GgmlType.F16 => weights.to(ScalarType.Float16),
            GgmlType.BF16 => weights.to(ScalarType.BFloat16),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        Safetensors.WriteData(stream, converted);
    }

    /// <summary>
    /// Llama 3.1's rope scaling as the converter writes it (rope_freqs.weight): per frequency pair, 1 above the
    /// high-frequency wavelength, the factor below the low-frequency one, and a smooth blend between.
    /// </summary>
    private static float[] Llama3RopeFactors(LlamaConfig config, RopeScaling scaling)
    {
        var dim = config.HeadDim;
        var lowWavelength = scaling.OriginalMaxPositionEmbeddings / scaling.LowFreqFactor;
        var highWavelength = scaling.OriginalMaxPositionEmbeddings / scaling.HighFreqFactor;
        var factors = new float[dim / 2];
        for (var i = 0; i < dim / 2; i++)
        {
            var frequency = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / dim);
            var wavelength = 2 * Math.PI / frequency;
            if (wavelength < highWavelength) factors[i] = 1;
            else if (wavelength > lowWavelength) factors[i] = (float)scaling.Factor;
            else
            {
                var smooth = (scaling.OriginalMaxPositionEmbeddings / wavelength - scaling.LowFreqFactor)
                    / (scaling.HighFreqFactor - scaling.LowFreqFactor);
                factors[i] = (float)(1 / ((1 - smooth) / scaling.Factor + smooth));
            }
        }
        return factors;
    }
}
