using System.Text.Json.Nodes;
using FineTune.Core;
using FineTune.Torch.Lora;

namespace FineTune.Torch.Formats;

/// <summary>
/// The adapter folder as PEFT's <c>save_pretrained</c> writes it: <c>adapter_model.safetensors</c> (keys
/// <c>base_model.model.&lt;module&gt;.lora_A.weight</c> / <c>.lora_B.weight</c>) and <c>adapter_config.json</c>, here
/// naming the base model and the revision it was trained on so that <c>PeftModel.from_pretrained</c> finds it.
/// </summary>
internal static class PeftAdapterExport
{
    public static void Write(string trainedAdapter, string destination, string? baseModel, string? revision)
    {
        Directory.CreateDirectory(destination);
        File.Copy(Path.Combine(trainedAdapter, LoraAdapter.WeightsFile),
            Path.Combine(destination, LoraAdapter.WeightsFile));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(trainedAdapter, LoraAdapter.ConfigFile)))!
            .AsObject();
        config["base_model_name_or_path"] = baseModel;
        config["revision"] = revision;
        File.WriteAllText(Path.Combine(destination, LoraAdapter.ConfigFile),
            config.ToJsonString(JsonText.Indented) + "\n");
    }
}
