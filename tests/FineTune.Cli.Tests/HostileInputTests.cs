using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using FineTune.Torch.Models;
using Xunit.Abstractions;

namespace FineTune.Cli.Tests;

/// <summary>
/// A corpus of malformed and hostile inputs, each run through the real command line: pipelines (validate),
/// datasets (run --until format), tokenizer.json (tokenize), safetensors (score) and tokens files (inspect). Each
/// must end with its exit code and diagnostic code, with no stack trace, within a generous hang guard, and must
/// leave every file in the working folder (the store and lock files included) as it was.
/// </summary>
public sealed class HostileInputTests(ITestOutputHelper output)
{
    /// <param name="Setup">Writes the inputs into the working folder; returns nothing.</param>
    /// <param name="Prepare">Commands run before the snapshot (what a user ran earlier), each expected to succeed.</param>
    public sealed record Case(string Group, string Name, Action<string> Setup, string[] Args, int Exit, string Code,
        string[][]? Prepare = null);

    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Every_malformed_input_is_refused_with_its_code_and_writes_nothing()
    {
        var cases = Pipelines().Concat(Datasets()).Concat(Tokenizers()).Concat(SafetensorsFiles()).ToList();
        var failures = new List<string>();
        var refused = 0;
        foreach (var c in cases)
        {
            using var cli = new CliHarness();
            c.Setup(cli.Folder);
            foreach (var prepare in c.Prepare ?? [])
            {
                var ready = await cli.Run(prepare).WaitAsync(HangGuard);
                if (ready.ExitCode != 0) failures.Add($"{c.Group}/{c.Name}: setup {string.Join(' ', prepare)} " +
                    $"exited {ready.ExitCode}: {ready.Error}");
            }
            var before = Snapshot(cli.Folder);
            CliHarness.Result result;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try { result = await cli.Run(c.Args).WaitAsync(HangGuard); }
            catch (TimeoutException) { failures.Add($"{c.Group}/{c.Name}: no answer within {HangGuard}"); continue; }
            output.WriteLine($"{clock.Elapsed.TotalSeconds,6:F2}s {c.Group}/{c.Name}"); // not asserted: a hang guard only
            var problems = Check(c, result, before, Snapshot(cli.Folder));
            if (problems.Count == 0) refused++;
            else failures.Add($"{c.Group}/{c.Name}: {string.Join("; ", problems)}");
        }
        refused += await TokensFiles(failures);
        var total = cases.Count + TokensFileCases.Length;
        output.WriteLine($"hostile inputs refused as expected: {refused} of {total}");
        Console.WriteLine($"hostile inputs refused as expected: {refused} of {total}");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(total >= 100, $"only {total} cases");
    }

    private static List<string> Check(Case c, CliHarness.Result result, Dictionary<string, string> before,
        Dictionary<string, string> after)
    {
        var problems = new List<string>();
        var text = result.Out + result.Error;
        if (result.ExitCode != c.Exit) problems.Add($"exit {result.ExitCode}, expected {c.Exit}");
        if (!text.Contains($"error {c.Code}:", StringComparison.Ordinal))
            problems.Add($"no 'error {c.Code}:' in: {Shorten(text)}");
        if (text.Contains("   at ", StringComparison.Ordinal)) problems.Add("a stack trace was printed");
        var changed = before.Keys.Union(after.Keys)
            .Where(k => !before.TryGetValue(k, out var b) || !after.TryGetValue(k, out var a) || a != b).ToList();
        if (changed.Count > 0) problems.Add($"files written or changed: {string.Join(", ", changed.Take(5))}");
        return problems;
    }

    // Each run leaves a record of what it did (timings included) beside the store, failed runs too; it is a log,
    // not store content.
    private static readonly string RunRecords = Path.Combine(".finetune", "runs") + Path.DirectorySeparatorChar;

    private static string Shorten(string text) => text.Length <= 600 ? text : text[..600] + "...";

    /// <summary>Every file under the folder with the sha256 of its content.</summary>
    private static Dictionary<string, string> Snapshot(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(path => !Path.GetRelativePath(folder, path).StartsWith(RunRecords, StringComparison.Ordinal))
            .ToDictionary(
            path => Path.GetRelativePath(folder, path),
            path => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))));

    private static Action<string> Files(params (string Name, byte[] Bytes)[] files) => folder =>
    {
        foreach (var (name, bytes) in files)
        {
            var path = Path.Combine(folder, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllBytes(path, bytes);
        }
    };

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    // ---------------------------------------------------------------- pipelines

    private static Case Pipeline(string name, string yaml, string code, int exit = 2) =>
        Pipeline(name, Utf8(yaml), code, exit);

    private static Case Pipeline(string name, byte[] yaml, string code, int exit = 2) =>
        new("pipeline", name, Files(("p.yaml", yaml)), ["validate", "p.yaml"], exit, code);

    private static IEnumerable<Case> Pipelines()
    {
        const string syntax = "FT0101";
        var laughs = "name: x\nl0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + string.Concat(Enumerable.Range(1, 9)
            .Select(i => $"l{i}: &l{i} [{string.Join(", ", Enumerable.Repeat($"*l{i - 1}", 9))}]\n"));
        yield return Pipeline("recursive alias", "name: x\nstages:\n  fetch: &a [*a]\n", syntax);
        yield return Pipeline("billion laughs", laughs, syntax);
        yield return Pipeline("alias to nothing", "name: x\nstages: *nowhere\n", syntax);
        yield return Pipeline("anchor on a scalar", "name: &n x\nstages: {}\n", syntax);
        yield return Pipeline("merge key", "base: &b {epochs: 1}\nstages:\n  train: {<<: *b}\n", syntax);
        yield return Pipeline("100,000 nested lists", "name: x\nstages: " + new string('[', 100_000) +
            new string(']', 100_000) + "\n", syntax);
        yield return Pipeline("5,000 nested flow maps", "name: x\nstages: " + string.Concat(Enumerable.Repeat("{a: ",
            5000)) + "1" + new string('}', 5000) + "\n", syntax);
        yield return Pipeline("17 nested block maps", "name: x\nstages:\n" + string.Concat(Enumerable.Range(1, 16)
            .Select(i => new string(' ', 2 * i) + $"k{i}:\n")) + new string(' ', 34) + "v: 1\n", syntax);
        yield return Pipeline("unclosed bracket", "name: x\nstages: [fetch\n", syntax);
        yield return Pipeline("unclosed quote", "name: \"x\nstages: {}\n", syntax);
        yield return Pipeline("tab indentation", "name: x\nstages:\n\tfetch: {}\n", syntax);
        yield return Pipeline("two documents", "name: x\n---\nname: y\n", syntax);
        yield return Pipeline("complex key", "? [a, b]\n: 1\nname: x\n", syntax);
        yield return Pipeline("python tag", "name: !!python/object:os.system x\n", "FT0110");
        yield return Pipeline("random bytes", RandomBytes(4096, 1), syntax);
        yield return Pipeline("NUL bytes", "name: x\0\0\nstages: {}\n", "FT0110");
        yield return Pipeline("bad UTF-8", [.. Utf8("name: x\nstages:\n  fetch: { path: \""), 0xC3, 0x28,
            .. Utf8("\" }\n  bogus: 1\n")], "FT0102");
        yield return Pipeline("BOM then an unknown key", [0xEF, 0xBB, 0xBF, .. Utf8("name: x\nbogus: 1\n")], "FT0102");
        yield return Pipeline("duplicate key", "name: x\nname: y\nstages: {}\n", syntax);
        yield return Pipeline("duplicate stage", "name: x\nstages:\n  train: {}\n  train: {}\n", syntax);
        yield return Pipeline("unknown stage", "name: x\nstages:\n  trian: {}\n", "FT0102");
        yield return Pipeline("unknown setting", "name: x\nstages:\n  train: { learnig_rate: 1 }\n", "FT0102");
        yield return Pipeline("a list at the top", "- name: x\n", "FT0104");
        yield return Pipeline("a scalar at the top", "just text\n", "FT0104");
        yield return Pipeline("stages is a list", "name: x\nstages: [fetch, train]\n", "FT0104");
        yield return Pipeline("epochs NaN", "name: x\nstages:\n  fetch: { path: d.json }\n  train: { epochs: .nan }\n",
            "FT0104");
        yield return Pipeline("learning rate infinite",
            "name: x\nstages:\n  fetch: { path: d.json }\n  train: { learning_rate: .inf }\n", "FT0104");
        yield return Pipeline("epochs negative", "name: x\nstages:\n  fetch: { path: d.json }\n  train: { epochs: -1 }\n",
            "FT0107");
        yield return Pipeline("max_length beyond int",
            "name: x\nstages:\n  fetch: { path: d.json }\n  tokenize: { max_length: 99999999999999999999 }\n", "FT0104");
        yield return Pipeline("seed 1e400", "name: x\nstages:\n  fetch: { path: d.json }\n  format: { seed: 1e400 }\n",
            "FT0104");
        yield return Pipeline("learning rate a word",
            "name: x\nstages:\n  fetch: { path: d.json }\n  train: { learning_rate: fast }\n", "FT0104");
        yield return Pipeline("extends itself", "extends: p.yaml\nname: x\n", "FT0111");
        yield return Pipeline("extends a missing file", "extends: nowhere.yaml\nname: x\n", "FT0100");
        yield return Pipeline("a 10 MB line", "name: x\nbogus: " + new string('x', 10_000_000) + "\n", "FT0102");
        yield return Pipeline("a 10 MB key", "name: x\n" + new string('k', 10_000_000) + ": 1\n", syntax);
        yield return Pipeline("100,000 unknown keys", "name: x\n" + string.Concat(Enumerable.Range(0, 100_000)
            .Select(i => $"k{i}: {i}\n")), "FT0102");
    }

    private static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    // ---------------------------------------------------------------- datasets

    private const string DataPipeline = "name: d\nstages:\n  fetch: { path: data.FILE }\n  format: {}\n";

    private static Case Data(string name, string extension, byte[] data, string code = "FT0201") =>
        new("dataset", name, Files(("p.yaml", Utf8(DataPipeline.Replace("FILE", extension))),
            ("data." + extension, data)), ["run", "p.yaml", "--until", "format"], 2, code,
            [["run", "p.yaml", "--until", "fetch"]]);

    private static Case Data(string name, string extension, string data, string code = "FT0201") =>
        Data(name, extension, Utf8(data), code);

    private const string Good = """{"instruction": "a", "input": "", "output": "b"}""";

    private static IEnumerable<Case> Datasets()
    {
        yield return Data("duplicate key", "jsonl", """{"instruction": "a", "instruction": "b", "output": "c"}""");
        yield return Data("duplicate key, escaped", "jsonl", """{"instruction": "a", "\u0069nstruction": "b", "output": "c"}""");
        yield return Data("duplicate nested key", "jsonl",
            """{"messages": [{"role": "user", "content": "a", "content": "b"}, {"role": "assistant", "content": "c"}]}""");
        yield return Data("duplicate key in a .json array", "json", $"[{Good}, {{\"output\": \"a\", \"output\": \"b\"}}]");
        yield return Data("bad UTF-8 byte", "jsonl", [.. Utf8("{\"instruction\": \"a"), 0xFF, .. Utf8("\", \"output\": \"b\"}\n")]);
        yield return Data("bad UTF-8, second line", "jsonl", [.. Utf8(Good + "\n{\"instruction\": \""), 0xC3, 0x28,
            .. Utf8("\", \"output\": \"b\"}\n")]);
        yield return Data("UTF-8 cut at the end", "jsonl", [.. Utf8(Good + "\n"), 0xE4, 0xBD]);
        yield return Data("overlong UTF-8", "jsonl", [.. Utf8("{\"instruction\": \""), 0xC0, 0xAF, .. Utf8("\", \"output\": \"b\"}\n")]);
        yield return Data("UTF-8 encoded surrogate", "json", [.. Utf8("[{\"instruction\": \""), 0xED, 0xA0, 0x80,
            .. Utf8("\", \"output\": \"b\"}]")]);
        yield return Data("Latin-1 file", "jsonl", Encoding.Latin1.GetBytes("{\"instruction\": \"café\", \"output\": \"b\"}\n"));
        yield return Data("UTF-16 file", "jsonl", Encoding.Unicode.GetBytes(Good + "\n"));
        yield return Data("NaN", "jsonl", """{"instruction": "a", "output": "b", "weight": NaN}""");
        yield return Data("Infinity", "json", """[{"instruction": "a", "output": "b", "weight": Infinity}]""");
        yield return Data("-Infinity", "jsonl", """{"instruction": "a", "output": "b", "weight": -Infinity}""");
        yield return Data("a 10 MB line of brackets", "jsonl", new string('[', 10_000_000));
        yield return Data("a 10 MB line cut short", "jsonl", "{\"instruction\": \"" + new string('x', 10_000_000));
        yield return Data("100,000 nested arrays", "json", "[" + Good + ", " + new string('[', 100_000) +
            new string(']', 100_000) + "]");
        yield return Data("65 nested objects", "jsonl", "{\"instruction\": \"a\", \"output\": \"b\", \"x\": " +
            string.Concat(Enumerable.Repeat("{\"a\": ", 65)) + "1" + new string('}', 66));
        yield return Data("output a number", "jsonl", """{"instruction": "a", "output": 42}""", "FT0202");
        yield return Data("output null", "jsonl", """{"instruction": "a", "output": null}""", "FT0202");
        yield return Data("instruction a list", "jsonl", """{"instruction": ["a"], "output": "b"}""", "FT0202");
        yield return Data("output 1e999", "jsonl", """{"instruction": "a", "output": 1e999}""", "FT0202");
        yield return Data("a record that is a number", "json", "[" + Good + ", 7]", "FT0202");
        yield return Data("a record that is a string", "jsonl", Good + "\n\"text\"\n", "FT0202");
        yield return Data("unterminated string", "jsonl", """{"instruction": "a, "output": "b"}""");
        yield return Data("trailing garbage after the array", "json", "[" + Good + "] ]");
        yield return Data("NUL byte", "jsonl", "{\"instruction\": \"a\"\0, \"output\": \"b\"}");
        yield return Data("BOM, then a broken record", "jsonl", [0xEF, 0xBB, 0xBF, .. Utf8(Good + "\n{\"instruction\": \n")]);
        yield return Data("two BOMs", "jsonl", [0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF, .. Utf8(Good + "\n")]);
        yield return Data("a .json object with two lists", "json", "{\"a\": [" + Good + "], \"b\": [" + Good + "]}");
        yield return Data("a .json scalar", "json", "42");
        yield return Data("random bytes", "jsonl", RandomBytes(4096, 2));
    }

    // ---------------------------------------------------------------- tokenizer.json

    private static Case Tokenizer(string name, byte[] json, int exit = 2, string code = "FT0402")
        => new("tokenizer.json", name, Files(("tok/tokenizer.json", json), ("in.jsonl", Utf8("{\"text\": \"hi\"}\n"))),
            ["tokenize", "tok", "--file", "in.jsonl"], exit, code);

    private static Case Tokenizer(string name, string json, int exit = 2, string code = "FT0402")
        => Tokenizer(name, Utf8(json), exit, code);

    private static string Bpe(string vocab = "\"h\": 0, \"i\": 1, \"hi\": 2", string merges = "[\"h i\"]",
        string added = "[]", string extra = "")
        => $"{{\"added_tokens\": {added}, \"normalizer\": null, \"pre_tokenizer\": null, \"post_processor\": null, " +
            $"\"decoder\": null, {extra}\"model\": {{\"type\": \"BPE\", \"vocab\": {{{vocab}}}, \"merges\": {merges}}}}}";

    private static IEnumerable<Case> Tokenizers()
    {
        yield return Tokenizer("not JSON", "tokenizer");
        yield return Tokenizer("empty", "");
        yield return Tokenizer("a list", "[]");
        yield return Tokenizer("no model", "{\"added_tokens\": []}");
        yield return Tokenizer("model Unigram", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
        yield return Tokenizer("vocab id int.MaxValue", Bpe(vocab: "\"h\": 2147483647"));
        yield return Tokenizer("vocab id -1", Bpe(vocab: "\"h\": -1, \"i\": 1, \"hi\": 2"));
        yield return Tokenizer("vocab id 2^40", Bpe(vocab: "\"h\": 1099511627776"));
        yield return Tokenizer("vocab id a string", Bpe(vocab: "\"h\": \"0\""));
        yield return Tokenizer("added id 2^31 - 1", Bpe(added: "[{\"id\": 2147483647, \"content\": \"<x>\"}]"));
        yield return Tokenizer("added id -5", Bpe(added: "[{\"id\": -5, \"content\": \"<x>\"}]"));
        yield return Tokenizer("added token without content", Bpe(added: "[{\"id\": 3}]"));
        yield return Tokenizer("merge of one token", Bpe(merges: "[[\"h\"]]"));
        yield return Tokenizer("merge of three tokens", Bpe(merges: "[\"h i x\"]"));
        yield return Tokenizer("merge of numbers", Bpe(merges: "[1, 2]"));
        yield return Tokenizer("merge of an unknown token", Bpe(merges: "[\"h q\"]"));
        yield return Tokenizer("merges an object", Bpe(merges: "{}"));
        yield return Tokenizer("300 nested arrays", Bpe(extra: "\"x\": " + new string('[', 300) + new string(']', 300) + ", "));
        yield return Tokenizer("bad UTF-8", Utf8(Bpe(vocab: "\"h\": 0, \"\u00e9\": 1")).Select(Spoil).ToArray());
        yield return Tokenizer("unsupported pre-tokenizer", Bpe(extra: "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, ")
            .Replace("\"pre_tokenizer\": null, ", ""));
        yield return Tokenizer("random bytes", RandomBytes(4096, 3));
        yield return new Case("tokenizer.json", "over the size cap (sparse)", folder =>
        {
            Files(("in.jsonl", Utf8("{\"text\": \"hi\"}\n")))(folder);
            Directory.CreateDirectory(Path.Combine(folder, "tok"));
            using var file = File.Create(Path.Combine(folder, "tok", "tokenizer.json"));
            file.SetLength(FineTune.Tokenizers.HfTokenizer.MaxFileBytes + 1);
        }, ["tokenize", "tok", "--file", "in.jsonl"], 2, "FT0402");
    }

    // ---------------------------------------------------------------- safetensors

    /// <summary>The files of a tiny model folder (config, weights, byte-level tokenizer), built once.</summary>
    internal static readonly Lazy<Dictionary<string, byte[]>> TinyModel = new(() =>
    {
        var folder = Path.Combine(Path.GetTempPath(), "finetune-hostile-" + Guid.NewGuid().ToString("N"));
        try
        {
            var config = new LlamaConfig
            {
                VocabSize = 259, HiddenSize = 8, IntermediateSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2,
                NumKeyValueHeads = 1, TieWordEmbeddings = true,
            };
            using (var model = new LlamaForCausalLM(config)) ModelFolder.Save(model, folder);
            ScoreAndGenerateTests.WriteByteTokenizer(folder);
            return Directory.EnumerateFiles(folder).ToDictionary(path => Path.GetFileName(path), File.ReadAllBytes);
        }
        finally { Directory.Delete(folder, recursive: true); }
    });

    private static Case Weights(string name, Func<byte[], byte[]> corrupt, string code = "FT0510", int exit = 2) =>
        new("safetensors", name, folder =>
        {
            foreach (var (file, bytes) in TinyModel.Value)
                Files(("model/" + file, file == "model.safetensors" ? corrupt(bytes) : bytes))(folder);
        }, ["score", "model", "--ids", "1,2,3"], exit, code);

    /// <summary>A safetensors file with this header (padded to 8) and this many data bytes.</summary>
    private static byte[] Safetensors(string header, int dataBytes, ulong? claimedLength = null)
    {
        var json = Utf8(header);
        var padded = json.Concat(Enumerable.Repeat((byte)' ', (8 - json.Length % 8) % 8)).ToArray();
        var bytes = new byte[8 + padded.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, claimedLength ?? (ulong)padded.Length);
        padded.CopyTo(bytes, 8);
        return bytes;
    }

    private static byte[] WithLength(byte[] bytes, ulong length)
    {
        var copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(copy, length);
        return copy;
    }

    private static byte Spoil(byte b) => b == 0xC3 ? (byte)0xFF : b;

    private static IEnumerable<Case> SafetensorsFiles()
    {
        const string w = "\"w\": {\"dtype\": \"F32\", ";
        yield return Weights("header length 2^64 - 1", b => WithLength(b, ulong.MaxValue));
        yield return Weights("header length 2^63", b => WithLength(b, 1UL << 63));
        yield return Weights("header length past the end", b => WithLength(b, (ulong)b.Length));
        yield return Weights("header length 0", b => WithLength(b, 0));
        yield return Weights("3 bytes", _ => [1, 2, 3]);
        yield return Weights("empty file", _ => []);
        yield return Weights("cut in the header", b => b[..20]);
        yield return Weights("cut in the data", b => b[..^4]);
        yield return Weights("header not JSON", _ => Safetensors("not json at all!", 0));
        yield return Weights("header a list", _ => Safetensors("[1, 2]", 0));
        yield return Weights("header bad UTF-8", _ => Safetensors("{\"w\u00e9\": 1}", 0).Select(Spoil).ToArray());
        yield return Weights("shape that wraps to 8 bytes", _ => Safetensors("{" + w +
            "\"shape\": [4611686018427387906], \"data_offsets\": [0, 8]}}", 8));
        yield return Weights("shape product beyond 2^64", _ => Safetensors("{" + w +
            "\"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8));
        yield return Weights("offsets beyond long", _ => Safetensors("{" + w +
            "\"shape\": [2], \"data_offsets\": [0, 18446744073709551615]}}", 8));
        yield return Weights("offsets reversed", _ => Safetensors("{" + w + "\"shape\": [2], \"data_offsets\": [8, 0]}}", 8));
        yield return Weights("offsets past the data", _ => Safetensors("{" + w +
            "\"shape\": [2], \"data_offsets\": [9223372036854775799, 9223372036854775807]}}", 8));
        yield return Weights("negative shape", _ => Safetensors("{" + w + "\"shape\": [-2], \"data_offsets\": [0, 8]}}", 8));
        yield return Weights("fractional shape", _ => Safetensors("{" + w + "\"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8));
        yield return Weights("unknown dtype", _ => Safetensors("{\"w\": {\"dtype\": \"F128\", \"shape\": [1], \"data_offsets\": [0, 16]}}", 16));
        yield return Weights("tensor not an object", _ => Safetensors("{\"w\": 5}", 0));
        yield return Weights("metadata not an object", _ => Safetensors("{\"__metadata__\": 5}", 0));
        yield return Weights("overlapping tensors", _ => Safetensors("{" + w + "\"shape\": [2], \"data_offsets\": [0, 8]}, " +
            "\"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12));
        yield return Weights("100 nested arrays in the header", _ => Safetensors("{\"__metadata__\": {\"x\": " +
            new string('[', 100) + new string(']', 100) + "}}", 0));
        yield return Weights("a valid file without the model's tensors", _ => Safetensors("{" + w +
            "\"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "FT0522");
    }

    // ---------------------------------------------------------------- tokens files

    /// <summary>(name, change to the train.tokens bytes that keeps its length, so the store's size check passes and
    /// the reader itself must refuse it).</summary>
    private static readonly (string Name, Action<byte[]> Corrupt)[] TokensFileCases =
    [
        ("bad magic", b => b[0] = (byte)'X'),
        ("version 7", b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), 7)),
        ("uint.MaxValue examples", b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), uint.MaxValue)),
        ("one example more", b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12),
            BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12)) + 1)),
        ("ulong.MaxValue tokens", b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), ulong.MaxValue)),
        ("2^62 tokens", b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(16), 1UL << 62)),
        ("first offset 5", b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(24), 5)),
        ("second offset negative", b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(32), -1)),
        ("second offset long.MaxValue", b => BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(32), long.MaxValue)),
        ("last offset short", b =>
        {
            var count = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(12));
            var at = b.AsSpan(24 + 8 * (int)count);
            BinaryPrimitives.WriteInt64LittleEndian(at, BinaryPrimitives.ReadInt64LittleEndian(at) - 1);
        }),
    ];

    private async Task<int> TokensFiles(List<string> failures)
    {
        using var cli = new CliHarness();
        cli.Write("data.json", EndToEndTests.Dataset());
        cli.Write("p.yaml", "name: t\nstages:\n  fetch: { path: data.json }\n  format: {}\n  tokenize: { max_length: 64 }\n");
        var ready = await cli.Run("run", "p.yaml", "--until", "tokenize").WaitAsync(HangGuard);
        Assert.True(ready.ExitCode == 0, ready.Error);
        var tokens = Directory.EnumerateFiles(cli.Folder, "train.tokens", SearchOption.AllDirectories).Single();
        var original = File.ReadAllBytes(tokens);
        var refused = 0;
        foreach (var (name, corrupt) in TokensFileCases)
        {
            var bytes = (byte[])original.Clone();
            corrupt(bytes);
            File.WriteAllBytes(tokens, bytes);
            var before = Snapshot(cli.Folder);
            var result = await cli.Run("inspect", "p.yaml").WaitAsync(HangGuard);
            var problems = Check(new Case("tokens", name, _ => { }, [], 3, "FT0925"), result, before,
                Snapshot(cli.Folder));
            if (problems.Count == 0) refused++;
            else failures.Add($"tokens/{name}: {string.Join("; ", problems)}");
        }
        File.WriteAllBytes(tokens, original);
        return refused;
    }
}
