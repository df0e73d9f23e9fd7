using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Tests.Models;

/// <summary>
/// LlamaAttention trains through libtorch's fused scaled_dot_product_attention, called as it calls it (is_causal, or a
/// boolean mask for packed rows). Here its output and its gradients with respect to q, k and v are checked against
/// attention written out eagerly: softmax(q kᵀ / √d, masked to -inf) v.
/// </summary>
public sealed class FusedAttentionTests
{
    private static Tensor Eager(Tensor q, Tensor k, Tensor v, Tensor mask)
    {
        var scores = q.matmul(k.transpose(-2, -1)) / Math.Sqrt(q.shape[^1]);
        return scores.masked_fill(mask.logical_not(), double.NegativeInfinity).softmax(-1).matmul(v);
    }

    private static (Tensor Output, Tensor[] Gradients) WithGradients(Func<Tensor, Tensor, Tensor, Tensor> attention,
        Tensor q, Tensor k, Tensor v, Tensor upstream)
    {
        var inputs = new[] { q, k, v }.Select(t => t.detach().clone().requires_grad_(true)).ToArray();
        var output = attention(inputs[0], inputs[1], inputs[2]);
        (output * upstream).sum().backward();
        return (output.detach(), inputs.Select(t => t.grad!).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Fused_attention_and_its_gradients_equal_eager_attention_in_float32(bool packedRows)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(11);
        long batch = 2, heads = 4, length = 24, headDim = 16;
        Tensor Draw() => randn([batch, heads, length, headDim], generator: generator);
        var (q, k, v, upstream) = (Draw(), Draw(), Draw(), Draw());
        var positions = arange(length);
        var causal = positions.unsqueeze(0).le(positions.unsqueeze(1)); // [T, T], key <= query
        Tensor mask;
        Func<Tensor, Tensor, Tensor, Tensor> fused;
        if (packedRows)
        {
            // Three documents in row 0, two in row 1: attention stays inside each (LlamaForCausalLM.DocumentMask).
            var documents = tensor(new long[] { 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, [batch, length]);
            mask = documents.unsqueeze(2).eq(documents.unsqueeze(1)).logical_and(causal).unsqueeze(1);
            fused = (a, b, c) => F.scaled_dot_product_attention(a, b, c, attn_mask: mask);
        }
        else
        {
            mask = causal.unsqueeze(0).unsqueeze(0);
            fused = (a, b, c) => F.scaled_dot_product_attention(a, b, c, is_casual: true);
        }
        var (fusedOutput, fusedGradients) = WithGradients(fused, q, k, v, upstream);
        var (eagerOutput, eagerGradients) = WithGradients((a, b, c) => Eager(a, b, c, mask), q, k, v, upstream);

        Assert.True(fusedOutput.allclose(eagerOutput, rtol: 1e-5, atol: 1e-5),
            $"output differs by {(fusedOutput - eagerOutput).abs().max().item<float>()}");
        string[] names = ["q", "k", "v"];
        for (var i = 0; i < 3; i++)
            Assert.True(fusedGradients[i].allclose(eagerGradients[i], rtol: 1e-5, atol: 1e-5),
                $"d{names[i]} differs by {(fusedGradients[i] - eagerGradients[i]).abs().max().item<float>()}");
    }

    [Fact]
    public void Bfloat16_attention_on_the_cpu_is_exact_attention_rounded_once_to_bfloat16()
    {
        // LlamaAttention.Attend computes bfloat16 inputs in float32 on a CPU: output and gradients are then the exact
        // (float64) attention of the same bfloat16 values, rounded once to bfloat16 (at most half a unit: 2^-8 relative).
        using var scope = NewDisposeScope();
        var generator = new Generator(12);
        long batch = 2, heads = 4, length = 24, headDim = 16;
        Tensor Draw() => randn([batch, heads, length, headDim], generator: generator).to(ScalarType.BFloat16);
        var (q, k, v, upstream) = (Draw(), Draw(), Draw(), Draw());
        var positions = arange(length);
        var mask = positions.unsqueeze(0).le(positions.unsqueeze(1)).unsqueeze(0).unsqueeze(0);

        var (output, gradients) = WithGradients((a, b, c) => FineTune.Torch.Models.LlamaAttention.Attend(a, b, c, null, causal: true),
            q, k, v, upstream);
        Tensor Exact(Tensor t) => t.to(ScalarType.Float64);
        var (exact, exactGradients) = WithGradients((a, b, c) => Eager(a, b, c, mask), Exact(q), Exact(k), Exact(v),
            Exact(upstream));

        Assert.Equal(ScalarType.BFloat16, output.dtype);
        void AssertRoundedOnce(Tensor actual, Tensor expected, string name)
        {
            var error = (actual.to(ScalarType.Float64) - expected).abs();
            var bound = expected.abs() * Math.Pow(2, -8) + 1e-6;
            Assert.True(error.le(bound).all().item<bool>(),
                $"{name}: error up to {(error - bound).max().item<double>()} above half a bfloat16 unit");
        }
        AssertRoundedOnce(output, exact, "output");
        string[] names = ["q", "k", "v"];
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(ScalarType.BFloat16, gradients[i].dtype);
            AssertRoundedOnce(gradients[i], exactGradients[i], "d" + names[i]);
        }
    }

    [Theory]
    [InlineData(200, 2)] // three blocks of query rows, the last one short; grouped-query
    [InlineData(40, 1)]  // one block; one key/value head per query head
    public void Blocked_causal_attention_and_its_gradients_equal_exact_attention(long length, long groups)
    {
        // Against float64 attention written out with repeated keys and values: the blocked form computes only the
        // scores on and below the diagonal (per block), and shares each key/value head among its query heads.
        using var scope = NewDisposeScope();
        var generator = new Generator(13);
        long batch = 2, kvHeads = 2, headDim = 16;
        var heads = kvHeads * groups;
        var q = randn([batch, heads, length, headDim], generator: generator);
        var k = randn([batch, kvHeads, length, headDim], generator: generator);
        var v = randn([batch, kvHeads, length, headDim], generator: generator);
        var upstream = randn([batch, heads, length, headDim], generator: generator);
        var positions = arange(length);
        var mask = positions.unsqueeze(0).le(positions.unsqueeze(1)).unsqueeze(0).unsqueeze(0);

        var (blocked, blockedGradients) = WithGradients(FineTune.Torch.Models.LlamaAttention.BlockedCausal, q, k, v, upstream);
        Tensor Exact(Tensor t) => t.to(ScalarType.Float64);
        var (exact, exactGradients) = WithGradients((a, b, c) => Eager(a, b.repeat_interleave(groups, dim: 1),
            c.repeat_interleave(groups, dim: 1), mask), Exact(q), Exact(k), Exact(v), Exact(upstream));

        Assert.True(length > FineTune.Torch.Models.LlamaAttention.BlockedQueryRows || groups == 1);
        Assert.True(blocked.to(ScalarType.Float64).allclose(exact, rtol: 1e-5, atol: 1e-5),
            $"output differs by {(blocked.to(ScalarType.Float64) - exact).abs().max().item<double>()}");
        string[] names = ["q", "k", "v"];
        for (var i = 0; i < 3; i++)
            Assert.True(blockedGradients[i].to(ScalarType.Float64).allclose(exactGradients[i], rtol: 1e-4, atol: 1e-5),
                $"d{names[i]} differs by {(blockedGradients[i].to(ScalarType.Float64) - exactGradients[i]).abs().max().item<double>()}");
        // Float32 causal attention with small scores takes this form, with grad and without.
        using (no_grad())
            Assert.True(FineTune.Torch.Models.LlamaAttention.Attend(q, k, v, null, causal: true).eq(blocked).all().item<bool>());
    }
}
