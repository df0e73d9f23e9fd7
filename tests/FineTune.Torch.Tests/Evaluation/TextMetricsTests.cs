using FineTune.Torch.Evaluation;

namespace FineTune.Torch.Tests.Evaluation;

/// <summary>Every expected value below is worked out by hand from the definitions in TextMetrics' comments.</summary>
public sealed class TextMetricsTests
{
    [Fact]
    public void Cjk_characters_are_units_and_other_runs_are_words()
    {
        Assert.Equal(["Hello", "世", "界", "ok!"], TextMetrics.Units("Hello 世界 ok!"));
        Assert.Equal(["abc", "中", "文", "def"], TextMetrics.Units("abc中文def"));
        Assert.Equal(["我", "是", "甄", "嬛", "，", "皇", "上", "。"], TextMetrics.Units("我是甄嬛，皇上。"));
        Assert.Equal(["the", "cat", "sat"], TextMetrics.Units("  the cat\nsat "));
    }

    [Fact]
    public void Bleu4_of_english_words_with_one_smoothed_order()
    {
        // p1 = 5/6, p2 = 3/5, p3 = 1/4, p4: no match among 3 four-grams -> 1 / (2 * 3); equal lengths: BP = 1.
        var scores = TextMetrics.Score("the cat sat on the mat", "the cat is on the mat");
        Assert.Equal(Math.Pow(5.0 / 6 * 3 / 5 * 1 / 4 * 1 / 6, 0.25), scores.Bleu4, 12);
        Assert.Equal(0.379918, scores.Bleu4, 6);
        // LCS "the cat on the mat" = 5 of 6 and 6.
        Assert.Equal(5.0 / 6, scores.RougeL, 12);
        // 5 shared unigrams of 6 each; 3 shared bigrams of 5 each.
        Assert.Equal(5.0 / 6, scores.Rouge1, 12);
        Assert.Equal(3.0 / 5, scores.Rouge2, 12);
    }

    [Fact]
    public void Bleu4_clips_repeated_ngrams_and_smooths_each_empty_order_more()
    {
        // "the" counted once (the reference has one): p1 = 1/4; then 0/3 -> 1/(2*3), 0/2 -> 1/(4*2), 0/1 -> 1/(8*1).
        var bleu = TextMetrics.Bleu4(["the", "the", "the", "the"], ["the", "cat"]);
        Assert.Equal(Math.Pow(1.0 / 4 * 1 / 6 * 1 / 8 * 1 / 8, 0.25), bleu, 12);
        Assert.Equal(0.159736, bleu, 6);
    }

    [Fact]
    public void Bleu4_penalises_a_short_answer_and_is_zero_without_a_matching_unigram()
    {
        // p1 = p2 = 1; no trigram or four-gram at all: 1/(2*1), 1/(4*1); BP = exp(1 - 6/2).
        var bleu = TextMetrics.Bleu4(["the", "cat"], ["the", "cat", "sat", "on", "the", "mat"]);
        Assert.Equal(Math.Exp(-2) * Math.Pow(0.5 * 0.25, 0.25), bleu, 12);
        Assert.Equal(0, TextMetrics.Bleu4(["dog"], ["the", "cat"]));
        Assert.Equal(0, TextMetrics.Bleu4([], ["the", "cat"]));
    }

    [Fact]
    public void Chinese_is_scored_by_characters()
    {
        // Answer 我是甄嬛。 (5 units) against 我是甄嬛，皇上。 (8 units).
        // p1 = 5/5, p2 = 3/4 (我是 是甄 甄嬛), p3 = 2/3, p4 = 1/2; BP = exp(1 - 8/5).
        var scores = TextMetrics.Score("我是甄嬛。", "我是甄嬛，皇上。");
        Assert.Equal(Math.Exp(-0.6) * Math.Pow(1 * 0.75 * (2.0 / 3) * 0.5, 0.25), scores.Bleu4, 12);
        Assert.Equal(0.388068, scores.Bleu4, 6);
        // ROUGE-1: P = 5/5, R = 5/8 -> 10/13; ROUGE-2: P = 3/4, R = 3/7 -> 6/11; LCS 我是甄嬛。 = 5 -> 10/13.
        Assert.Equal(10.0 / 13, scores.Rouge1, 12);
        Assert.Equal(6.0 / 11, scores.Rouge2, 12);
        Assert.Equal(10.0 / 13, scores.RougeL, 12);
    }

    [Fact]
    public void Identical_texts_score_one_and_disjoint_texts_zero()
    {
        var same = TextMetrics.Score("臣妾做不到啊", "臣妾做不到啊");
        Assert.Equal(new TextScores(1, 1, 1, 1), same);
        Assert.Equal(new TextScores(0, 0, 0, 0), TextMetrics.Score("abc", "xyz"));
    }
}
