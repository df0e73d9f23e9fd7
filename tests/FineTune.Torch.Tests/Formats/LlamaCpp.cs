using LLama;
using LLama.Common;
using LLama.Native;

namespace FineTune.Torch.Tests.Formats;

/// <summary>
/// A GGUF file run by llama.cpp through LLamaSharp on the CPU, with flash attention off and an F32 KV cache so its
/// logits can be compared exactly (see /work/shared/notes/llamasharp.md): the real consumer of the GGUF export.
/// </summary>
internal sealed class LlamaCpp : IDisposable
{
    // llama.cpp logs a great deal; the last lines are kept to explain a refused file.
    private static readonly Queue<string> RecentLog = new();

    private static readonly Lazy<bool> Quiet = new(() =>
    {
        NativeLibraryConfig.All.WithLogCallback((_, message) =>
        {
            lock (RecentLog)
            {
                RecentLog.Enqueue(message);
                while (RecentLog.Count > 40) RecentLog.Dequeue();
            }
        });
        return true;
    });

    private readonly LLamaWeights _weights;
    private readonly ModelParams _parameters;

    public LlamaCpp(string ggufPath, uint contextSize = 256)
    {
        _ = Quiet.Value;
        _parameters = new ModelParams(ggufPath)
        {
            ContextSize = contextSize,
            GpuLayerCount = 0,
            FlashAttention = false,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            BatchSize = contextSize,
            UBatchSize = contextSize,
        };
        try { _weights = LLamaWeights.LoadFromFile(_parameters); }
        catch (LLama.Exceptions.LoadWeightsFailedException e)
        {
            lock (RecentLog) throw new InvalidOperationException($"{e.Message}; llama.cpp said: {string.Concat(RecentLog)}");
        }
    }

    public int VocabSize => _weights.Vocab.Count;

    /// <summary>llama.cpp's own tokenization of <paramref name="text"/>, special tokens parsed, no BOS added.</summary>
    public int[] Tokenize(string text) =>
        [.. _weights.Tokenize(text, add_bos: false, special: true, System.Text.Encoding.UTF8).Select(t => (int)t)];

    /// <summary>The logits after each position of <paramref name="ids"/> (a fresh context).</summary>
    public float[][] Logits(IReadOnlyList<int> ids)
    {
        using var context = _weights.CreateContext(_parameters);
        var batch = new LLamaBatch();
        for (var i = 0; i < ids.Count; i++) batch.Add(ids[i], i, LLamaSeqId.Zero, logits: true);
        Check(context.NativeHandle.Decode(batch));
        return [.. Enumerable.Range(0, ids.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray())];
    }

    /// <summary>Greedy continuation of <paramref name="prompt"/>: the arg-max token at each step.</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int maxNewTokens)
    {
        using var context = _weights.CreateContext(_parameters);
        var batch = new LLamaBatch();
        for (var i = 0; i < prompt.Count; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, logits: i == prompt.Count - 1);
        Check(context.NativeHandle.Decode(batch));
        var generated = new List<int>();
        var last = prompt.Count - 1;
        for (var step = 0; step < maxNewTokens; step++)
        {
            var logits = context.NativeHandle.GetLogitsIth(last);
            var next = 0;
            for (var v = 1; v < logits.Length; v++) if (logits[v] > logits[next]) next = v;
            generated.Add(next);
            batch.Clear();
            batch.Add(next, prompt.Count + step, LLamaSeqId.Zero, logits: true);
            Check(context.NativeHandle.Decode(batch));
            last = 0;
        }
        return generated;
    }

    private static void Check(DecodeResult result) =>
        Assert.True(result == DecodeResult.Ok, $"llama.cpp decode returned {result}");

    public void Dispose() => _weights.Dispose();
}
