using FineTune.Torch.Evaluation;

namespace FineTune.Torch.Tests.Evaluation;

/// <summary>report.md's answer tables are GitHub-flavoured Markdown: one line per row, '|' escaped in cells.</summary>
public sealed class EvaluationMarkdownTests
{
    [Fact]
    public void Answers_are_one_table_row_each_and_a_blank_answer_is_named()
    {
        var report = EvaluationReport.Create(ValidationScore.None,
            [new EvaluationAnswer("你是谁？", "我是甄嬛。\n家父 | 甄远道", 9, "stop")], [], [],
            new BaseAnswers("builtin:tiny (initial weights)", ["\n\n\n\n"], []), []);

        var rows = EvaluationMarkdown.Write(report).Split('\n').Where(l => l.StartsWith("| 你是谁？", StringComparison.Ordinal));

        Assert.Equal(["| 你是谁？ | *(4 whitespace characters)* | 我是甄嬛。<br>家父 \\| 甄远道 |"], rows);
    }
}
