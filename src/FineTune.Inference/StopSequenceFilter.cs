using System.Text;

namespace FineTune.Inference;

/// <summary>
/// Passes an answer's text on piece by piece until one of the stop sequences appears, which is cut off with what
/// follows it (OpenAI's <c>stop</c>). Text that could be the start of a stop sequence is held back until the
/// next piece shows whether it is, so a stop sequence is never streamed in part.
/// </summary>
internal sealed class StopSequenceFilter(IReadOnlyList<string> stops, Action<string> emit)
{
    private readonly StringBuilder _emitted = new();
    private string _pending = "";

    /// <summary>The text passed on so far.</summary>
    public string Text => _emitted.ToString();

    /// <summary>Adds a piece; true when a stop sequence was reached (the text before it is passed on).</summary>
    public bool Push(string piece)
    {
        if (piece.Length == 0) return false;
        var pending = _pending + piece;
        var end = -1;
        foreach (var stop in stops)
        {
            var at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (end < 0 || at < end)) end = at;
        }
        if (end >= 0)
        {
            Emit(pending[..end]);
            _pending = "";
            return true;
        }
        var held = HeldBack(pending);
        Emit(pending[..^held]);
        _pending = pending[^held..];
        return false;
    }

    /// <summary>Passes on the held-back text once no more will come.</summary>
    public void Flush()
    {
        Emit(_pending);
        _pending = "";
    }

    /// <summary>The length of the longest end of <paramref name="text"/> that begins some stop sequence.</summary>
    private int HeldBack(string text)
    {
        var longest = 0;
        foreach (var stop in stops)
            for (var length = Math.Min(stop.Length - 1, text.Length); length > longest; length--)
                if (text.AsSpan(text.Length - length).SequenceEqual(stop.AsSpan(0, length)))
                {
                    longest = length;
                    break;
                }
        return longest;
    }

    private void Emit(string text)
    {
        if (text.Length == 0) return;
        _emitted.Append(text);
        emit(text);
    }
}
