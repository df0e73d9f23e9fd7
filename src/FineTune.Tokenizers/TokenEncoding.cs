namespace FineTune.Tokenizers;

/// <summary>Ids and, for each id, the UTF-16 range of the input it came from; tokens the post-processor inserted get
/// (0, 0).</summary>
public sealed record TokenEncoding(int[] Ids, (int Start, int End)[] Offsets);
