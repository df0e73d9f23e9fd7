using System.Text.Json.Nodes;
using FineTune.Core;
using static TorchSharp.torch;

namespace FineTune.Torch.Formats;

/// <summary>
/// Writes weights as transformers' <c>save_pretrained</c> does: one <c>model.safetensors</c>, or, above the shard size,
/// <c>model-0000i-of-0000n.safetensors</c> files and <c>model.safetensors.index.json</c> (<c>metadata.total_size</c>
/// in bytes, <c>weight_map</c> from tensor name to file). Tensors are read from the source one shard at a time, so the
/// peak is one shard, never the whole model.
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
    /// count. Ctrl+C (<paramref name="cancellationToken"/>) is honoured between source files.
    /// </summary>
    public static long Write(IReadOnlyList<string> sourceFiles, string directory, ScalarType dtype, long maxShardBytes,
        CancellationToken cancellationToken = default)
    {
        var entries = sourceFiles
            .SelectMany(file => Safetensors.ReadHeader(file).Tensors.Select(entry => (File: file, Entry: entry)))
            .OrderBy(t => t.Entry.Name, StringComparer.Ordinal)
            .ToList();
        var shards = new List<List<(string File, SafetensorsEntry Entry)>>();
        long current = 0, total = 0;
        foreach (var tensor in entries)
        {
            var bytes = TargetBytes(tensor.Entry, dtype);
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
            var converted = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                foreach (var group in shards[i].GroupBy(t => t.File))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var wanted = group.Select(t => t.Entry.Name).ToHashSet(StringComparer.Ordinal);
                    foreach (var (key, tensor) in Safetensors.Load(group.Key, wanted.Contains))
                    {
                        converted[key] = tensor.is_floating_point() && tensor.dtype != dtype
                            ? Swap(tensor, tensor.to(dtype)) : tensor;
                    }
                }
                Safetensors.Save(Path.Combine(directory, name), converted);
                elements += converted.Values.Sum(t => t.numel());
                foreach (var key in converted.Keys) weightMap[key] = name;
            }
            finally
            {
                foreach (var t in converted.Values) t.Dispose();
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

        static Tensor Swap(Tensor old, Tensor replacement) { old.Dispose(); return replacement; }
    }

    private static long TargetBytes(SafetensorsEntry entry, ScalarType dtype)
    {
        var elements = entry.Shape.Aggregate(1L, (a, b) => a * b);
        var floating = entry.ScalarType is ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16
            or ScalarType.Float64;
        return floating ? elements * ElementSize(dtype) : entry.ByteSize;
    }

    private static long ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 => 8,
        ScalarType.Float32 => 4,
        _ => 2,
    };
}
