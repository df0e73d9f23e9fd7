namespace FineTune.Inference.Tests;

public sealed class StopSequenceFilterTests
{
    [Theory]
    [InlineData(new[] { "Hel", "lo wo", "rld" }, new[] { "o w" }, "Hell", true)]
    [InlineData(new[] { "ab", "c", "de" }, new[] { "cd", "bcx" }, "ab", true)]
    [InlineData(new[] { "ab", "c", "de" }, new[] { "cx" }, "abcde", false)]
    [InlineData(new[] { "xyz" }, new string[0], "xyz", false)]
    public void Cuts_at_the_first_stop_sequence_even_across_pieces(string[] pieces, string[] stops, string text,
        bool stopped)
    {
        var emitted = new List<string>();
        var filter = new StopSequenceFilter(stops, emitted.Add);
        var reached = false;
        foreach (var piece in pieces)
            if (filter.Push(piece))
            {
                reached = true;
                break;
            }
        if (!reached) filter.Flush();
        Assert.Equal(stopped, reached);
        Assert.Equal(text, string.Concat(emitted));
        Assert.Equal(text, filter.Text);
        // nothing of a stop sequence was ever passed on
        Assert.All(emitted, e => Assert.DoesNotContain(e, stops.Where(s => s.Length > 0 && e.Contains(s))));
    }

    [Fact]
    public void Holds_back_only_what_could_begin_a_stop_sequence()
    {
        var emitted = new List<string>();
        var filter = new StopSequenceFilter(["END"], emitted.Add);
        Assert.False(filter.Push("the E"));
        Assert.Equal(["the "], emitted);
        Assert.False(filter.Push("X"));
        Assert.Equal(["the ", "EX"], emitted);
    }
}
