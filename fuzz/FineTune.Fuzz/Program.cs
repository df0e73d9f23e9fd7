using System.Buffers.Binary;
using System.Text;
using FineTune.Core.Diagnostics;
using FineTune.Core.Tokenization;
using FineTune.Tokenizers;
using FineTune.Torch.Formats;
using SharpFuzz;
using static TorchSharp.torch;

// The readers of files that come from outside (safetensors, tokens files, tokenizer.json) against mutated inputs.
// A reader may refuse an input only with the project's located error (FineTuneException naming the file, or
// TokenizerJsonException); anything else (OverflowException, OutOfMemoryException, IndexOutOfRangeException, ...)
// is a finding: the input is saved under fuzz-findings/ and the exit code is 1.
//
//   FineTune.Fuzz [EXECUTIONS] [SEED]   seeded mutation loop, in process (what .ci/run calls: reproducible)
//   FineTune.Fuzz --afl TARGET          one input from stdin through SharpFuzz's Fuzzer.Run, for afl-fuzz on a
//                                       build instrumented with `sharpfuzz` (neither ships with the repository)
if (args is ["--afl", var name])
{
    var target = Targets.All.Single(t => t.Name == name);
    Fuzzer.Run(stream =>
    {
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        Targets.Run(target, buffer.ToArray());
    });
    return 0;
}

var executions = args.Length > 0 ? int.Parse(args[0]) : 30_000;
var seed = args.Length > 1 ? int.Parse(args[1]) : 1;
var random = new Random(seed);
var findings = 0;
var refused = Targets.All.ToDictionary(t => t.Name, _ => 0);
var clock = System.Diagnostics.Stopwatch.StartNew();
for (var i = 0; i < executions; i++)
{
    var target = Targets.All[i % Targets.All.Length];
    var original = target.Seeds[random.Next(target.Seeds.Length)];
    var input = target.MutateStructure is { } structured && random.Next(2) == 0
        ? structured(original, random)
        : Mutator.Mutate(original, random);
    try
    {
        if (!Targets.Run(target, input)) refused[target.Name]++;
    }
    catch (Exception e)
    {
        findings++;
        Directory.CreateDirectory("fuzz-findings");
        var file = Path.Combine("fuzz-findings", $"{target.Name}-{seed}-{i}.bin");
        File.WriteAllBytes(file, input);
        Console.Error.WriteLine($"finding: {target.Name} input {i} ({file}): {e.GetType().Name}: {e.Message}");
        if (findings >= 20) break;
    }
}
Console.WriteLine($"fuzz: {executions} executions (seed {seed}) in {clock.Elapsed.TotalSeconds:F1}s; refused " +
    $"cleanly: {string.Join(", ", refused.Select(r => $"{r.Key} {r.Value}"))}; findings: {findings}");
return findings == 0 ? 0 : 1;

/// <param name="MutateStructure">A mutation that keeps the file's framing valid (for half the inputs), so that the
/// checks behind the framing are reached too.</param>
internal sealed record Target(string Name, string FileName, byte[][] Seeds, Action<string> Read,
    Func<byte[], Random, byte[]>? MutateStructure = null);

internal static class Targets
{
    private static readonly string Folder = Directory.CreateTempSubdirectory("finetune-fuzz").FullName;

    public static readonly Target[] All =
    [
        new("safetensors", "model.safetensors", SafetensorsSeeds(), path =>
        {
            foreach (var tensor in Safetensors.Load(path).Values) tensor.Dispose();
        }, MutateSafetensorsHeader),
        new("tokens", "train.tokens", TokensSeeds(), path => TokenizedDataset.Read(path)),
        new("tokenizer.json", "tokenizer.json", TokenizerSeeds(), path => HfTokenizer.Load(path).Encode("hi there")),
    ];

    /// <summary>True when the reader accepted the input, false when it refused it with a located error; any other
    /// exception propagates.</summary>
    public static bool Run(Target target, byte[] input)
    {
        var path = Path.Combine(Folder, target.FileName);
        File.WriteAllBytes(path, input);
        try
        {
            target.Read(path);
            return true;
        }
        catch (FineTuneException e) when (e.Diagnostics.All(d => d.File == path)) { return false; }
        catch (TokenizerJsonException e) when (e.Origin == path) { return false; }
    }

    /// <summary>
    /// The JSON header mutated and its 8-byte length written again: a byte-level mutation of a whole file almost
    /// always changes the header's length and is refused at the first check, never reaching the tensor entries.
    /// </summary>
    private static byte[] MutateSafetensorsHeader(byte[] seed, Random random)
    {
        var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
        var header = Mutator.Mutate(seed[8..(8 + length)], random);
        var file = new byte[8 + header.Length + seed.Length - 8 - length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        seed.AsSpan(8 + length).CopyTo(file.AsSpan(8 + header.Length));
        return file;
    }

    private static byte[] Bytes(Action<string> write)
    {
        var path = Path.Combine(Folder, "seed");
        write(path);
        return File.ReadAllBytes(path);
    }

    private static byte[][] SafetensorsSeeds() =>
    [
        Bytes(path =>
        {
            using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
            using var b = ones(4, dtype: ScalarType.Int64);
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b });
        }),
        Bytes(path =>
        {
            using var c = zeros([1, 1, 2], dtype: ScalarType.BFloat16);
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["c"] = c }, new Dictionary<string, string>
                { ["note"] = "x" });
        }),
    ];

    private static byte[][] TokensSeeds()
    {
        var builder = new TokenizedDataset.Builder();
        builder.Add([1, 2, 3], [-100, 2, 3]);
        builder.Add([4, 5], [4, 5]);
        var empty = new TokenizedDataset.Builder();
        return [Bytes(builder.Write), Bytes(empty.Write)];
    }

    private static byte[][] TokenizerSeeds() =>
    [
        Encoding.UTF8.GetBytes("""
            {"added_tokens": [{"id": 5, "content": "<s>", "special": true}], "normalizer": null,
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
             "post_processor": null, "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2, "Ġ": 3, "t": 4}, "merges": ["h i"]}}
            """),
        Encoding.UTF8.GetBytes("""
            {"added_tokens": [], "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
             {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}, "pre_tokenizer": null,
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
             {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}}},
             "decoder": null, "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
             "vocab": {"<unk>": 0, "<s>": 1, "▁": 2, "h": 3, "i": 4, "<0x41>": 5}, "merges": [["h", "i"]]}}
            """),
    ];
}

/// <summary>Byte-level mutations, plus the values that break size arithmetic written over numbers and lengths.</summary>
internal static class Mutator
{
    private static readonly ulong[] Interesting =
    [
        0, 1, 7, 8, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
        0x4000_0000_0000_0002, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF,
    ];

    private static readonly string[] InterestingText =
    [
        "-1", "0", "2147483647", "2147483648", "4294967296", "9223372036854775807", "18446744073709551616",
        "4611686018427387906", "1e400", "NaN", "-0", "1.5", "\"x\"", "null", "[]", "{}", "[[[[[[[[", "\\ud800",
    ];

    public static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = new List<byte>(seed);
        var rounds = 1 + random.Next(4);
        for (var r = 0; r < rounds; r++)
        {
            if (bytes.Count == 0) { bytes.Add((byte)random.Next(256)); continue; }
            var at = random.Next(bytes.Count);
            switch (random.Next(8))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1: bytes[at] = (byte)random.Next(256); break;
                case 2:
                {
                    var width = random.Next(2) == 0 ? 4 : 8;
                    var value = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(value, Interesting[random.Next(Interesting.Length)]);
                    for (var k = 0; k < width && at + k < bytes.Count; k++) bytes[at + k] = value[k];
                    break;
                }
                case 3: bytes.RemoveRange(at, bytes.Count - at); break;
                case 4: bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + random.Next(16))); break;
                case 5:
                {
                    var length = Math.Min(bytes.Count - at, 1 + random.Next(32));
                    bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(at, length));
                    break;
                }
                case 6:
                {
                    // Over a number in the text, where the JSON of a header or tokenizer.json holds one.
                    var start = bytes.FindIndex(at, b => b is >= (byte)'0' and <= (byte)'9');
                    if (start < 0) break;
                    var end = start;
                    while (end < bytes.Count && bytes[end] is >= (byte)'0' and <= (byte)'9') end++;
                    bytes.RemoveRange(start, end - start);
                    bytes.InsertRange(start, Encoding.UTF8.GetBytes(InterestingText[random.Next(InterestingText.Length)]));
                    break;
                }
                default: bytes.Insert(at, (byte)random.Next(256)); break;
            }
        }
        return [.. bytes];
    }
}
