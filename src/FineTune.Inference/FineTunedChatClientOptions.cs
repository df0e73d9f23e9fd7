namespace FineTune.Inference;

/// <summary>How <see cref="FineTunedChatClient.Open"/> loads a model.</summary>
public sealed class FineTunedChatClientOptions
{
    /// <summary>A PEFT adapter folder (adapter_config.json, adapter_model.safetensors) to apply, unmerged, on the
    /// model; null for none. A folder holding only an adapter can also be given as the model itself.</summary>
    public string? AdapterPath { get; set; }

    /// <summary>The name the client reports as its model (default: the pipeline file's or the folder's
    /// name).</summary>
    public string? ModelId { get; set; }
}
