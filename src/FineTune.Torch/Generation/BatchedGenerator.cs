using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Generation;

/// <summary>
/// Greedy decoding of many prompts at once: the prompts are left-padded to one width (so every row's next token is
/// at the last column), each row's positions count from its first real token and padded keys are masked, so a row
/// computes what it would alone; one key/value cache serves the batch, and a row that produced a stop token is
/// finished (it is fed padding until the others are done, and its extra output is dropped).
/// </summary>
internal static class BatchedGenerator
{
    /// <summary>
    /// The greedy continuation of each prompt, as <see cref="TextGenerator.GenerateIds"/> gives it for that prompt
    /// alone with temperature 0 (the stop token included when one ended it). Prompts are run
    /// <paramref name="batchSize"/> at a time, longest first, so that neighbours waste little on padding.
    /// </summary>
    public static List<int>[] GenerateGreedy(LlamaForCausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts,
        int maxNewTokens, IReadOnlyList<int> stopTokenIds, int padTokenId, int batchSize = 16,
        double repetitionPenalty = 1.0, Action<int>? onFinished = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var results = new List<int>[prompts.Count];
        var order = Enumerable.Range(0, prompts.Count).OrderByDescending(i => prompts[i].Count).ToArray();
        for (var start = 0; start < order.Length; start += batchSize)
        {
            var rows = order.AsSpan(start, Math.Min(batchSize, order.Length - start)).ToArray();
            var answers = GenerateBatch(model, [.. rows.Select(i => prompts[i])], maxNewTokens, stopTokenIds,
                padTokenId, repetitionPenalty, cancellationToken);
            for (var row = 0; row < rows.Length; row++) results[rows[row]] = answers[row];
            onFinished?.Invoke(start + rows.Length);
        }
        return results;
    }

    private static List<int>[] GenerateBatch(LlamaForCausalLM model, IReadOnlyList<IReadOnlyList<int>> prompts,
        int maxNewTokens, IReadOnlyList<int> stops, int padTokenId, double repetitionPenalty,
        CancellationToken cancellationToken)
    {
        var batch = prompts.Count;
        var generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        if (maxNewTokens <= 0) return generated;
        if (prompts.Any(p => p.Count == 0)) throw new ArgumentException("a prompt is empty", nameof(prompts));
        var width = prompts.Max(p => p.Count);
        var ids = new long[batch * width];
        var mask = new long[batch * width];
        var positions = new long[batch * width];
        Array.Fill(ids, padTokenId);
        for (var row = 0; row < batch; row++)
        {
            var offset = width - prompts[row].Count;
            for (var i = 0; i < prompts[row].Count; i++)
            {
                ids[row * width + offset + i] = prompts[row][i];
                mask[row * width + offset + i] = 1;
                positions[row * width + offset + i] = i;
            }
        }
        var present = prompts.Select(p => new HashSet<int>(p)).ToArray();
        var finished = new bool[batch];

        var device = model.parameters().First().device;
        using var noGrad = no_grad();
        var wasTraining = model.training;
        model.eval();
        using var cache = model.NewCache();
        var attentionMask = tensor(mask, [batch, width], device: device);
        var input = tensor(ids, [batch, width], device: device);
        var positionIds = tensor(positions, [batch, width], device: device);
        try
        {
            for (var step = 0; step < maxNewTokens; step++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                long[] next;
                using (NewDisposeScope())
                {
                    var hidden = model.Hidden(input, attentionMask, cache, positionIds);
                    var logits = model.Logits(hidden[.., -1]).to(ScalarType.Float32);
                    if (repetitionPenalty != 1.0)
                        logits = stack([.. Enumerable.Range(0, batch).Select(row =>
                            TextGenerator.ApplyRepetitionPenalty(logits[row], present[row], repetitionPenalty))]);
                    next = logits.argmax(-1).cpu().data<long>().ToArray();
                }
                for (var row = 0; row < batch; row++)
                {
                    if (finished[row]) continue;
                    var token = (int)next[row];
                    generated[row].Add(token);
                    present[row].Add(token);
                    if (stops.Contains(token)) finished[row] = true;
                }
                if (finished.All(f => f) || step + 1 == maxNewTokens) break;

                var nextIds = new long[batch];
                var nextPositions = new long[batch];
                for (var row = 0; row < batch; row++)
                {
                    nextIds[row] = finished[row] ? padTokenId : next[row];
                    nextPositions[row] = prompts[row].Count + step;
                }
                input.Dispose();
                positionIds.Dispose();
                input = tensor(nextIds, [batch, 1], device: device);
                positionIds = tensor(nextPositions, [batch, 1], device: device);
                var grown = cat([attentionMask, ones(batch, 1, ScalarType.Int64, device)], 1);
                attentionMask.Dispose();
                attentionMask = grown;
            }
        }
        finally
        {
            input.Dispose();
            positionIds.Dispose();
            attentionMask.Dispose();
            if (wasTraining) model.train();
        }
        return generated;
    }
}
