namespace FineTune.Core.Diagnostics;

/// <summary>
/// The one-line meaning of a diagnostic code, kept on the constant itself so that the README's table, the
/// <c>codes</c> command and the catalogue cannot drift apart.
/// </summary>
[AttributeUsage(AttributeTargets.Field, AllowMultiple = false, Inherited = false)]
internal sealed class MeaningAttribute(string text) : Attribute
{
    public string Text { get; } = text;
}
