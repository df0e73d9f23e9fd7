using System.Text.Json.Nodes;
using FineTune.Core;
using static TorchSharp.torch;

namespace FineTune.Torch.Formats;

/// <summary>
/// Writes weights as transformers' <c>save_pretrained</c> does: one <c>model.safetensors</c>, or, above the shard size,
/// <c>model-0000i-of-0000n.safetensors</c> files and <c>model.safetensors.index.json</c> (<c>metadata.total_size</c>
/// in bytes, <c>weight_map</c> from tensor name to file). Each tensor is read, converted and written in slices of a
/// few MB, so the export holds neither the model nor a shard in memory.
/// </summary>
internal static class SafetensorsShards
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    public static string ShardName(int index, int count) => $"model-{index:D5}-of-{count:D5}.safetensors";

    /// <summary>
    /// Copies the tensors of <paramref name="sourceFiles"/> into <paramref name="directory"/>, floating-point ones
    /// cast to <paramref name="dtype"/>. Tensors
    /// go into shards in name order; a new shard starts when the next tensor would pass
    /// <paramref name="maxShardBytes"/> (a tensor larger than that gets a shard of its own). Returns the element
    /// count. Ctrl+C (<paramref name="cancellationToken"/>) is honoured between tensors.
    /// </summary>
    public static long Write(IReadOnlyList<string> sourceFiles, string directory, ScalarType dtype, long maxShardBytes,
        CancellationToken cancellationToken = default)
    {
        var entries = sourceFiles
            .Select(file => (File: file, Header: Safetensors.ReadHeader(file)))
            .SelectMany(f => f.Header.Tensors.Select(entry => (f.File, f.Header, Entry: entry)))
            .OrderBy(t => t.Entry.Name, StringComparer.Ordinal)
            .Select(t => (t.File, t.Header, t.Entry,
                Layout: new SafetensorsLayout(t.Entry.Name, TargetType(t.Entry, dtype), t.Entry.Shape)))
            .ToList();
        var shards = new List<List<(string File, SafetensorsHeader Header, SafetensorsEntry Entry,
            SafetensorsLayout Layout)>>();
        long current = 0, total = 0;
        foreach (var tensor in entries)
        {
            var bytes = tensor.Layout.ByteSize;
            if (shards.Count == 0 || (current > 0 && current + bytes > maxShardBytes))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(tensor);
            current += bytes;
            total += bytes;
        }

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long elements = 0;
        for (var i = 0; i < shards.Count; i++)
        {
            var name = shards.Count == 1 ? SingleFile : ShardName(i + 1, shards.Count);
            var sources = shards[i].ToDictionary(t => t.Entry.Name, StringComparer.Ordinal);
            var layout = shards[i].Select(t => t.Layout).ToList();
            Safetensors.Write(Path.Combine(directory, name), layout, (tensor, stream) =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (file, header, entry, _) = sources[tensor.Name];
                foreach (var slice in Safetensors.ReadRowSlices(file, header, entry, Safetensors.SliceBytes))
                {
                    using var converted = slice.to(tensor.Dtype);
                    Safetensors.WriteData(stream, converted);
                }
            });
            foreach (var tensor in layout)
            {
                weightMap[tensor.Name] = name;
                elements += tensor.Shape.Aggregate(1L, (a, b) => a * b);
            }
        }
        if (shards.Count > 1)
        {
            var index = new JsonObject
            {
                ["metadata"] = new JsonObject { ["total_size"] = total },
                ["weight_map"] = new JsonObject(weightMap.Select(kv =>
                    KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
            };
            File.WriteAllText(Path.Combine(directory, IndexFile), index.ToJsonString(JsonText.Indented) + "\n");
        }
        return elements;
    }

    private static ScalarType TargetType(SafetensorsEntry entry, ScalarType dtype) =>
        entry.ScalarType is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float64
            ? dtype : entry.ScalarType;
}
