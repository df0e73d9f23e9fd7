using FineTune.Core.Tokenization;
using FineTune.Torch.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Torch.Generation;

/// <param name="MaxNewTokens">Most tokens generated (the stop token counts).</param>
/// <param name="Temperature">0 picks the most likely token every step (greedy); above 0 samples.</param>
/// <param name="TopP">When sampling, draw only from the smallest set of tokens whose probabilities reach this
/// share.</param>
/// <param name="Seed">Seed of the sampler, so a sampled answer can be reproduced.</param>
/// <param name="StopTokenIds">Generation ends after any of these (null: the tokenizer's stop tokens).</param>
/// <param name="RepetitionPenalty">transformers' repetition_penalty: 1 leaves the logits alone; above 1 makes every
/// token already in the prompt or the answer less likely.</param>
internal sealed record GenerationOptions(
    int MaxNewTokens = 64,
    double Temperature = 0,
    double TopP = 1.0,
    long Seed = 0,
    IReadOnlyList<int>? StopTokenIds = null,
    double RepetitionPenalty = 1.0);

/// <param name="TokenIds">The generated ids, without the prompt, including the stop token when one ended it.</param>
/// <param name="Text">The answer as text (special tokens and the stop token dropped).</param>
/// <param name="FinishReason">"stop" when a stop token ended it, "length" when max_new_tokens did.</param>
internal sealed record GenerationResult(IReadOnlyList<int> TokenIds, string Text, string FinishReason);

/// <summary>
/// Autoregressive decoding with the model's key/value cache: the prompt is run once (prefill), then each new
/// token is fed alone and attends to the cached positions, so a step costs one token's work instead of the whole
/// sequence's.
/// </summary>
internal sealed class TextGenerator(LlamaForCausalLM model, IChatTokenizer tokenizer)
{
    /// <summary>
    /// Continues <paramref name="promptIds"/>. <paramref name="onText"/> receives the answer's text as it grows, in
    /// pieces that concatenate to <see cref="GenerationResult.Text"/>.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<int> promptIds, GenerationOptions options,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        var stops = options.StopTokenIds ?? tokenizer.StopTokenIds;
        var text = new IncrementalText(tokenizer);
        var ids = GenerateIds(model, promptIds, options with { StopTokenIds = stops }, id =>
        {
            if (stops.Contains(id)) return;
            var piece = text.Add(id);
            if (piece.Length > 0) onText?.Invoke(piece);
        }, cancellationToken);
        var finish = ids.Count > 0 && stops.Contains(ids[^1]) ? "stop" : "length";
        var rest = text.Flush(cutOff: finish == "length");
        if (rest.Length > 0) onText?.Invoke(rest);
        return new GenerationResult(ids,
            finish == "length" ? IncrementalText.WithoutIncompleteTail(text.Text) : text.Text, finish);
    }

    /// <summary>
    /// Token-level decoding without a tokenizer; <paramref name="onToken"/> sees each id as it is chosen.
    /// </summary>
    public static List<int> GenerateIds(LlamaForCausalLM model, IReadOnlyList<int> promptIds, GenerationOptions options,
        Action<int>? onToken = null, CancellationToken cancellationToken = default)
    {
        if (promptIds.Count == 0) throw new ArgumentException("the prompt is empty", nameof(promptIds));
        var stops = options.StopTokenIds ?? [];
        var generated = new List<int>();
        if (options.MaxNewTokens <= 0) return generated;
        var present = new HashSet<int>(promptIds);

        var device = model.parameters().First().device;
        using var sampler = options.Temperature > 0 ? new torch.Generator(unchecked((ulong)options.Seed), device)
            : null;
        using var noGrad = no_grad();
        var wasTraining = model.training;
        model.eval();
        using var cache = model.NewCache();
        try
        {
            var input = tensor(promptIds.Select(i => (long)i).ToArray(), [1, promptIds.Count], device: device);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int next;
                using (NewDisposeScope())
                {
                    var hidden = model.Hidden(input, attentionMask: null, cache: cache);
                    var logits = model.Logits(hidden[0, -1]).to(ScalarType.Float32);
                    if (options.RepetitionPenalty != 1.0)
                        logits = ApplyRepetitionPenalty(logits, present, options.RepetitionPenalty);
                    next = options.Temperature > 0 ? Sample(logits, options, sampler!)
                        : (int)logits.argmax().item<long>();
                }
                input.Dispose();
                generated.Add(next);
                present.Add(next);
                onToken?.Invoke(next);
                if (stops.Contains(next) || generated.Count >= options.MaxNewTokens) break;
                input = tensor(new long[] { next }, [1, 1], device: device);
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        return generated;
    }

    /// <summary>
    /// transformers' RepetitionPenaltyLogitsProcessor: the logit of every token already present (prompt or answer) is
    /// divided by the penalty when positive and multiplied by it when negative, so with a penalty above 1 it always
    /// moves towards less likely. Other logits are untouched.
    /// </summary>
    public static Tensor ApplyRepetitionPenalty(Tensor logits, IEnumerable<int> presentIds, double penalty)
    {
        var ids = presentIds.Select(i => (long)i).Distinct().ToArray();
        if (ids.Length == 0 || penalty == 1.0) return logits;
        var index = tensor(ids, device: logits.device);
        var scores = logits.gather(0, index);
        var penalised = where(scores.lt(0), scores * penalty, scores / penalty);
        return logits.scatter(0, index, penalised);
    }

    private static int Sample(Tensor logits, GenerationOptions options, torch.Generator sampler)
    {
        var probabilities = nn.functional.softmax(logits / options.Temperature, dim: -1);
        if (options.TopP < 1.0)
        {
            var (sorted, order) = probabilities.sort(descending: true);
            // Keep a token while the mass before it is still short of top_p; the most likely token always stays.
            var massBefore = sorted.cumsum(0) - sorted;
            sorted = sorted.masked_fill(massBefore.ge(options.TopP), 0);
            probabilities = zeros_like(probabilities).scatter(0, order, sorted);
        }
        return (int)multinomial(probabilities, 1, generator: sampler).item<long>();
    }
}

/// <summary>
/// Turns a growing list of ids into text pieces. Byte-level tokens can split a UTF-8 character, and the decoder
/// shows such a tail as U+FFFD until its last byte arrives, so that tail is held back rather than printed. When
/// max_new_tokens ends the answer inside a character, its bytes never all arrive, and the tail is dropped.
/// </summary>
internal sealed class IncrementalText(IChatTokenizer tokenizer)
{
    private readonly List<int> _ids = [];
    private string _emitted = "";

    public string Text => tokenizer.Decode(_ids);

    /// <summary>
    /// <paramref name="decoded"/> without a final U+FFFD: UTF-8 decoding gives one for an incomplete last character
    /// (a lead byte and fewer continuation bytes than it announces), as ids cut off by a length limit can end.
    /// </summary>
    public static string WithoutIncompleteTail(string decoded) =>
        decoded.EndsWith('\uFFFD') ? decoded[..^1] : decoded;

    /// <summary>Adds one id; returns the text that became final (often empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        var text = tokenizer.Decode(_ids);
        var stable = text.TrimEnd('\uFFFD');
        if (stable.Length <= _emitted.Length || !stable.StartsWith(_emitted, StringComparison.Ordinal)) return "";
        var piece = stable[_emitted.Length..];
        _emitted = stable;
        return piece;
    }

    /// <summary>The text not yet returned, once nothing more will come; <paramref name="cutOff"/> when a length
    /// limit ended the ids.</summary>
    public string Flush(bool cutOff = false)
    {
        var text = tokenizer.Decode(_ids);
        if (cutOff) text = WithoutIncompleteTail(text);
        if (!text.StartsWith(_emitted, StringComparison.Ordinal)) return "";
        var piece = text[_emitted.Length..];
        _emitted = text;
        return piece;
    }
}
