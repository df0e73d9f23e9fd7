using System.Text.RegularExpressions;

namespace FineTune.Torch.Training;

/// <summary>
/// Which trained weights AdamW decays, by parameter name, as transformers' Trainer decides (get_decay_parameter_names):
/// not biases, not norm weights (input_layernorm, post_attention_layernorm, the final model.norm, Qwen3's q_norm and
/// k_norm); everything else, embeddings, the output head and LoRA adapters included.
/// </summary>
internal static partial class WeightDecay
{
    public static bool Applies(string parameterName) => !NotDecayed().IsMatch(parameterName.ToLowerInvariant());

    // transformers' forbidden_name_patterns, searched in the lower-cased full name.
    [GeneratedRegex(@"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)", RegexOptions.CultureInvariant)]
    private static partial Regex NotDecayed();
}
