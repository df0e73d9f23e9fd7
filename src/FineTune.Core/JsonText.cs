using System.Text.Encodings.Web;
using System.Text.Json;

namespace FineTune.Core;

/// <summary>The JSON the tool writes for people to read: indented, with CJK and other text left unescaped.</summary>
internal static class JsonText
{
    public static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>One line per document (JSON lines), text unescaped.</summary>
    public static readonly JsonSerializerOptions Compact = new()
    {
        WriteIndented = false,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
