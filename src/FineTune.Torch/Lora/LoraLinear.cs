using FineTune.Torch.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace FineTune.Torch.Lora;

/// <summary>
/// A frozen Linear plus a low-rank update, as PEFT's lora.Linear computes it:
/// y = x Wᵀ + b + scale · B(A(dropout(x))), with A [r, in] and B [out, r] kept in float32 whatever the base dtype.
/// The base weight and bias are registered under their own names (weight, bias) and the adapters as lora_A and
/// lora_B sub-modules, so the keys read <c>q_proj.weight</c>, <c>q_proj.lora_A.weight</c>, <c>q_proj.lora_B.weight</c>:
/// the base keys stay those of the Hugging Face checkpoint and the adapter keys are PEFT's minus its prefix.
/// </summary>
internal sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly Linear lora_A;
    private readonly Linear lora_B;
    // Not an nn.Dropout: its masks come from the global generator, which gradient checkpointing could not replay on
    // CUDA.
    private readonly double dropout;

    public int Rank { get; }
    public double Scale { get; }

    /// <summary>
    /// True once the update has been added into <see cref="BaseWeight"/>; forward then skips the adapter path.
    /// </summary>
    public bool Merged { get; private set; }

    public long InFeatures => weight.shape[1];
    public long OutFeatures => weight.shape[0];
    public Parameter BaseWeight => weight;
    public Parameter? BaseBias => bias;
    public Parameter A => lora_A.weight!;
    public Parameter B => lora_B.weight!;

    /// <param name="baseLayer">The layer to adapt; its parameters are shared (not copied) and frozen.</param>
    /// <param name="generator">Draws A; B starts at zero so the wrapped layer computes exactly what the base
    /// does.</param>
    public LoraLinear(Linear baseLayer, int rank, double alpha, double dropout, bool useRslora,
        Generator? generator = null)
        : base("LoraLinear")
    {
        if (rank <= 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, "LoRA rank must be positive");
        weight = baseLayer.weight!;
        bias = baseLayer.bias;
        weight.requires_grad = false;
        if (bias is not null) bias.requires_grad = false;

        Rank = rank;
        Scale = useRslora ? alpha / Math.Sqrt(rank) : alpha / rank;
        var device = weight.device;
        lora_A = nn.Linear(InFeatures, rank, hasBias: false, device: device, dtype: ScalarType.Float32);
        lora_B = nn.Linear(rank, OutFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        using (no_grad())
        {
            // PEFT: kaiming_uniform_(a=sqrt(5)) on A, i.e. uniform(±1/sqrt(in)) exactly like nn.Linear's default init.
            var bound = 1.0 / Math.Sqrt(InFeatures);
            lora_A.weight!.uniform_(-bound, bound, generator);
            lora_B.weight!.zero_();
        }
        this.dropout = dropout;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (Merged) return F.linear(x, weight, bias);
        if (weight.device.type == DeviceType.CUDA && weight.dtype == ScalarType.BFloat16)
        {
            // Autocast on the GPU: the adapter's products run in bfloat16 like the base's, while A and B stay float32
            // parameters (the casts pass their gradients back in float32) and AdamW updates them in float32.
            var result = F.linear(x, weight, bias);
            using var scope = NewDisposeScope();
            var input = SeededDropout.Apply(x, dropout, training);
            var low = F.linear(F.linear(input, A.to(ScalarType.BFloat16)), B.to(ScalarType.BFloat16)) * Scale;
            return (result + low).MoveToOuterDisposeScope();
        }
        // Elsewhere the adapter computes in float32 (it is small), which keeps step 0 exactly the base model. Both
        // scales (LoRA's and dropout's 1/(1-p)) go on the r-wide side, and the update goes into the base's output in
        // place, so the [tokens, in] input and the [tokens, out] output (for gate_proj and up_proj the width of the
        // MLP) are passed over as few times as possible. In float32 the product itself accumulates it (GEMM with
        // beta 1, on rows: in-place work on a view would make autograd copy the gradient).
        long[] outputShape = [.. x.shape[..^1], OutFeatures];
        var rows = x.reshape(-1, InFeatures);
        var dropping = training && dropout > 0;
        var rankScale = dropping ? Scale / (1 - dropout) : Scale;
        // Where a graph is built: under no_grad (evaluation, generation, a checkpointed layer's first pass) the plain
        // path below computes the same values without an autograd node holding the rank product.
        if (weight.dtype == ScalarType.Float32 && weight.device.type == DeviceType.CPU && is_grad_enabled())
        {
            var seed = dropping ? SeededDropout.NextBernoulliMaskSeed(rows) : null;
            if (!dropping || seed is not null)
                return LoraProduct.Apply(rows, weight, bias, A, B, rankScale, dropout, seed).view(outputShape);
        }
        var output = F.linear(rows, weight, bias);
        using (NewDisposeScope())
        {
            var adapterInput = rows.to(ScalarType.Float32);
            if (dropping) adapterInput = SeededDropout.ZeroDropped(adapterInput, dropout);
            var rank = lora_A.forward(adapterInput) * rankScale;
            if (output.dtype == ScalarType.Float32) output.addmm_(rank, B.t());
            else output.add_(lora_B.forward(rank).to(output.dtype));
        }
        return output.view(outputShape);
    }

    /// <summary>scale · B A [out, in] in float32.</summary>
    public Tensor DeltaWeight()
    {
        using var _ = no_grad();
        return matmul(B, A) * Scale;
    }

    /// <summary>Adds scale · B A into the base weight (in float32, stored back in the base dtype).</summary>
    public void Merge()
    {
        if (Merged) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        weight.copy_((weight.to(ScalarType.Float32) + DeltaWeight()).to(weight.dtype));
        Merged = true;
    }

    /// <summary>
    /// A plain Linear in <paramref name="dtype"/> holding base + scale · B A, summed in float32 and cast once. A layer
    /// already merged in place holds the sum in its base dtype, so only the cast remains.
    /// </summary>
    public Linear ToMergedLinear(ScalarType dtype)
    {
        using var _ = no_grad();
        var linear = nn.Linear(InFeatures, OutFeatures, hasBias: bias is not null, device: weight.device, dtype: dtype);
        using (var scope = NewDisposeScope())
        {
            var sum = Merged ? weight.to(ScalarType.Float32) : weight.to(ScalarType.Float32) + DeltaWeight();
            linear.weight!.copy_(sum.to(dtype));
            if (bias is not null) linear.bias!.copy_(bias.to(dtype));
        }
        linear.weight!.requires_grad = false;
        if (bias is not null) linear.bias!.requires_grad = false;
        return linear;
    }
}
