using System.Text;

namespace FineTune.Tokenizers;

/// <summary>
/// Text as a normalizer left it, with the UTF-16 range of the original input that each of its UTF-16 units came from
/// (Hugging Face's NormalizedString), so token offsets can point into what the user wrote.
/// </summary>
internal sealed class AlignedText
{
    public readonly string Text;
    private readonly int[]? _start;
    private readonly int[]? _end;
    private readonly int _shift;

    /// <summary>Unchanged text that starts at <paramref name="shift"/> in the original.</summary>
    public AlignedText(string text, int shift) { Text = text; _shift = shift; }

    public AlignedText(string text, int[] start, int[] end) { Text = text; _start = start; _end = end; }

    public int OriginalStart(int index) => _start is null ? _shift + index : _start[index];
    public int OriginalEnd(int index) => _end is null ? _shift + index + 1 : _end[index];

    /// <summary>Original range of units [start, end) of this text; an empty range maps to an empty original
    /// range.</summary>
    public (int Start, int End) Original(int start, int end) =>
        end > start ? (OriginalStart(start), OriginalEnd(end - 1))
        : Text.Length == 0 ? (_shift, _shift)
        : start < Text.Length ? (OriginalStart(start), OriginalStart(start))
            : (OriginalEnd(Text.Length - 1), OriginalEnd(Text.Length - 1));

    public sealed class Builder(int capacity)
    {
        private readonly StringBuilder _text = new(capacity);
        private readonly List<int> _start = new(capacity);
        private readonly List<int> _end = new(capacity);

        public void Append(ReadOnlySpan<char> chunk, int originalStart, int originalEnd)
        {
            _text.Append(chunk);
            for (var i = 0; i < chunk.Length; i++) { _start.Add(originalStart); _end.Add(originalEnd); }
        }

        /// <summary>Copies units [start, end) of <paramref name="source"/> with their own alignment.</summary>
        public void Copy(AlignedText source, int start, int end)
        {
            _text.Append(source.Text, start, end - start);
            for (var i = start; i < end; i++) { _start.Add(source.OriginalStart(i)); _end.Add(source.OriginalEnd(i)); }
        }

        public AlignedText Build() => new(_text.ToString(), [.. _start], [.. _end]);
    }
}

/// <summary>A piece of an <see cref="AlignedText"/> that the pre-tokenizer cut out; the model encodes each one on its
/// own.</summary>
internal readonly record struct PreToken(AlignedText Source, int Start, int Length)
{
    public ReadOnlySpan<char> Span => Source.Text.AsSpan(Start, Length);
}
