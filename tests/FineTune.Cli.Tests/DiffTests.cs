using System.Diagnostics;
using System.Text.Json.Nodes;
using FineTune.Inference;
using Microsoft.Extensions.AI;

namespace FineTune.Cli.Tests;

public sealed class DiffTests
{
    private static void Git(string folder, params string[] args)
    {
        var start = new ProcessStartInfo("git", ["-C", folder, "-c", "user.name=test", "-c", "user.email=t@example.com",
            .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var git = Process.Start(start)!;
        git.WaitForExit();
        Assert.True(git.ExitCode == 0, git.StandardError.ReadToEnd());
    }

    [Fact]
    public async Task Two_runs_with_a_changed_learning_rate_show_exactly_that_setting_and_the_changed_figures()
    {
        using var cli = new CliHarness();
        cli.Write("pipelines/data.json", EndToEndTests.Dataset());
        cli.Write("pipelines/tiny.yaml", EndToEndTests.Pipeline);
        Assert.Equal(0, (await cli.Run("run", "pipelines/tiny.yaml")).ExitCode);
        Git(cli.Folder, "init", "-q");
        Git(cli.Folder, "add", "pipelines/tiny.yaml", "pipelines/tiny.lock.yaml");
        Git(cli.Folder, "commit", "-q", "-m", "first run");
        File.Copy(Path.Combine(cli.Folder, "pipelines/tiny.lock.yaml"), Path.Combine(cli.Folder, "first.lock.yaml"));
        // Each run's evaluate answer as its own report gives it, read before the next run replaces the report.
        async Task<string> ReportedAnswer()
        {
            var report = await cli.Run("report", "pipelines/tiny.yaml", "--json");
            Assert.True(report.ExitCode == 0, report.Error);
            var answer = JsonNode.Parse(report.Out)!["report"]!["answers"]!.AsArray().Single()!;
            Assert.Equal("你是谁？", (string)answer["prompt"]!);
            return (string)answer["answer"]!;
        }
        var firstAnswer = await ReportedAnswer();
        var changed = await cli.Run("run", "pipelines/tiny.yaml", "--set", "train.learning_rate=2e-2");
        Assert.True(changed.ExitCode == 0, changed.Error);
        var secondAnswer = await ReportedAnswer();

        // the working copy against HEAD, and two files: the same differences
        var fromGit = await cli.Run("diff", "pipelines/tiny.yaml", "--rev", "HEAD", "--json");
        var fromFiles = await cli.Run("diff", "first.lock.yaml", "pipelines/tiny.lock.yaml", "--json");
        Assert.True(fromGit.ExitCode == 0, fromGit.Error);
        Assert.True(fromFiles.ExitCode == 0, fromFiles.Error);
        foreach (var output in new[] { fromGit.Out, fromFiles.Out })
        {
            var stages = JsonNode.Parse(output)!["stages"]!.AsObject();
            foreach (var unchanged in new[] { "fetch", "format", "tokenize" })
            {
                Assert.Equal("unchanged", (string)stages[unchanged]!["status"]!);
                Assert.Empty(stages[unchanged]!["figures"]!.AsObject());
            }
            var settings = stages.Select(s => (s.Key, s.Value!["settings"]!.AsObject()))
                .SelectMany(s => s.Item2.Select(kv => $"{s.Key}.{kv.Key}")).ToList();
            Assert.Equal(["train.learning_rate"], settings);
            var learningRate = stages["train"]!["settings"]!["learning_rate"]!;
            Assert.Equal(0.01, (double)learningRate["old"]!);
            Assert.Equal(0.02, (double)learningRate["new"]!);
            foreach (var rerun in new[] { "train", "evaluate", "export" })
                Assert.Equal("changed", (string)stages[rerun]!["status"]!);
            var finalLoss = stages["train"]!["figures"]!["final_loss"]!;
            Assert.NotEqual((double)finalLoss["old"]!, (double)finalLoss["new"]!);
            Assert.Equal((double)finalLoss["new"]! - (double)finalLoss["old"]!, (double)finalLoss["change"]!, 6);
            var evaluation = stages["evaluate"]!["figures"]!;
            foreach (var side in new[] { "old", "new" })
            {
                // perplexity is exp(validation loss), each rounded in the lock file
                var expected = Math.Exp((double)evaluation["validation_loss"]![side]!);
                Assert.InRange((double)evaluation["perplexity"]![side]! / expected, 0.9999, 1.0001);
            }
        }

        // Side by side: the old run's answer (from the store, found through the lock file at HEAD) and the new one.
        var everything = await cli.Run("diff", "pipelines/tiny.yaml", "--rev", "HEAD", "--json", "--all");
        Assert.True(everything.ExitCode == 0, everything.Error);
        var answer = Assert.Single(JsonNode.Parse(everything.Out)!["stages"]!["evaluate"]!["answers"]!.AsArray())!;
        Assert.Equal("你是谁？", (string)answer["prompt"]!);
        Assert.Equal(firstAnswer, (string)answer["old"]!);
        Assert.Equal(secondAnswer, (string)answer["new"]!);

        // The pipeline's export, through the IChatClient, answers as the chat command does.
        var chat = await cli.Run("chat", "pipelines/tiny.yaml", "--prompt", "你是谁？");
        using (var client = FineTunedChatClient.Open(Path.Combine(cli.Folder, "pipelines/tiny.yaml")))
        {
            var response = await client.GetResponseAsync([new(ChatRole.User, "你是谁？")]);
            Assert.Equal(chat.Out.TrimEnd('\n'), response.Text);
            Assert.Equal("tiny", client.Metadata.DefaultModelId);
        }

        var text = await cli.Run("diff", "pipelines/tiny.lock.yaml");
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains("fetch: unchanged", text.Out);
        Assert.Matches(@"train: changed \(key [0-9a-f]{8} -> [0-9a-f]{8}\)", text.Out);
        Assert.Matches(@"learning_rate  0\.01 -> 0\.02 \(\+0\.01\)", text.Out);
    }

    [Fact]
    public async Task A_missing_lock_file_or_revision_is_named()
    {
        using var cli = new CliHarness();
        var missing = await cli.Run("diff", "nope.lock.yaml", "other.lock.yaml");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("error FT1010: lock file 'nope.lock.yaml' does not exist", missing.Error);
        cli.Write("a.lock.yaml", "stages: {}\n");
        Git(cli.Folder, "init", "-q");
        var revision = await cli.Run("diff", "a.lock.yaml", "--rev", "HEAD~3");
        Assert.Equal(2, revision.ExitCode);
        Assert.Contains("error FT1010: git cannot show 'a.lock.yaml' at revision 'HEAD~3'", revision.Error);
    }
}
