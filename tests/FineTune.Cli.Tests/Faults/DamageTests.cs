using Xunit.Abstractions;

namespace FineTune.Cli.Tests.Faults;

/// <summary>
/// Every kind of file a run leaves (each stage's entry.json and its checksum, each stage's outputs, the lock files),
/// damaged three ways: the next run finds it (a changed size or a missing file on any reuse, a flipped byte of an
/// output with --verify), computes it again, and ends with the bytes of the undamaged run.
/// </summary>
public class DamageTests(ITestOutputHelper output)
{
    // (stage, file in its entry folder); a null stage is a file of the pipeline folder or the store itself.
    private static readonly (string? Stage, string File)[] Kinds =
    [
        ("fetch", "entry.json"),
        ("format", "entry.json.sha256"),
        ("fetch", "output/data.json"),
        ("format", "output/train.jsonl"),
        ("tokenize", "output/train.tokens"),
        ("tokenize", "output/tokenizer/tokenizer.json"),
        ("train", "output/model/model.safetensors"),
        ("train", "output/metrics.jsonl"),
        ("evaluate", "output/report.json"),
        ("export", "output/model.safetensors"),
        ("export", "output/config.json"),
        (null, "tiny.lock.yaml"),
        (null, ".finetune/run.lock"),
    ];

    private static readonly string[] Damages = ["flip", "truncate", "delete"];

    [Fact]
    public async Task Each_kind_of_file_flipped_truncated_or_deleted_is_found_and_computed_again()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", KillTests.Pipeline);
        var pipelines = Path.Combine(cli.Folder, "pipelines");
        var first = await cli.Run("run", "pipelines/tiny.yaml");
        Assert.True(first.ExitCode == 0, first.Error + first.Out);
        var referenceLock = File.ReadAllText(Path.Combine(pipelines, "tiny.lock.yaml"));
        var model = Directory.GetFiles(Path.Combine(pipelines, ".finetune", "stages", "export"), "model.safetensors",
            SearchOption.AllDirectories).Single();
        var referenceModel = File.ReadAllBytes(model);

        var detected = 0;
        foreach (var (stage, file) in Kinds)
        foreach (var how in Damages)
        {
            var what = $"{stage ?? "pipeline"} {file} ({how})";
            var path = stage is null ? Path.Combine(pipelines, file)
                : Path.Combine(Directory.GetDirectories(Path.Combine(pipelines, ".finetune", "stages", stage))
                    .Single(), file);
            Damage(path, how);

            // A flipped byte keeps the size: of the outputs only --verify finds it; entry.json is checked against
            // its sha256 on every reuse.
            var verify = how == "flip" && file.StartsWith("output/", StringComparison.Ordinal);
            var next = verify ? await cli.Run("run", "pipelines/tiny.yaml", "--verify")
                : await cli.Run("run", "pipelines/tiny.yaml");
            Assert.True(next.ExitCode == 0, what + ": " + next.Error + next.Out);
            if (stage is not null)
            {
                var notice = file == "entry.json.sha256" && how == "delete"
                    ? $"{stage}: the stored output was written by an older version of the tool; it is computed again"
                    : $"{stage}: the stored output is damaged (";
                Assert.True(next.Error.Contains(notice), what + ": " + next.Error);
                Assert.Contains($"{stage,-9} runs: ", next.Out);
            }
            Assert.True(referenceLock == File.ReadAllText(Path.Combine(pipelines, "tiny.lock.yaml")), what);
            detected++;
        }
        Assert.Equal(referenceModel, File.ReadAllBytes(model));
        var verified = await cli.Run("cache", "verify", "pipelines/tiny.yaml");
        Assert.Contains("6 entries checked, 0 damaged", verified.Out);
        output.WriteLine($"damaged files found and computed again: {detected} " +
            $"({Kinds.Length} kinds x {string.Join(", ", Damages)})");
    }

    private static void Damage(string path, string how)
    {
        var bytes = File.ReadAllBytes(path);
        switch (how)
        {
            case "flip": bytes[bytes.Length / 2] ^= 0x01; File.WriteAllBytes(path, bytes); break;
            case "truncate": File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]); break;
            default: File.Delete(path); break;
        }
    }
}
