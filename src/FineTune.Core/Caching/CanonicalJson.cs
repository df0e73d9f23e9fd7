using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace FineTune.Core.Caching;

/// <summary>
/// Deterministic JSON for hashing: keys sorted ordinally, numbers in round-trip form, no whitespace. Two equal
/// settings trees always give the same bytes, whatever order they were written in.
/// </summary>
internal static class CanonicalJson
{
    public static string Serialize(object? value)
    {
        var buffer = new ArrayBufferWriterStream();
        using (var writer = new Utf8JsonWriter(buffer,
            new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            Write(writer, value);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void Write(Utf8JsonWriter writer, object? value)
    {
        switch (value)
        {
            case null: writer.WriteNullValue(); break;
            case string s: writer.WriteStringValue(s); break;
            case bool b: writer.WriteBooleanValue(b); break;
            case int i: writer.WriteNumberValue(i); break;
            case long l: writer.WriteNumberValue(l); break;
            case double d: writer.WriteRawValue(d.ToString("R", CultureInfo.InvariantCulture)); break;
            case IDictionary dictionary:
                writer.WriteStartObject();
                foreach (var key in dictionary.Keys.Cast<object>().Select(k => k.ToString()!)
                    .OrderBy(k => k, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(key);
                    Write(writer, dictionary[key]);
                }
                writer.WriteEndObject();
                break;
            case IEnumerable list:
                writer.WriteStartArray();
                foreach (var item in list) Write(writer, item);
                writer.WriteEndArray();
                break;
            default: writer.WriteStringValue(Convert.ToString(value, CultureInfo.InvariantCulture)); break;
        }
    }

    private sealed class ArrayBufferWriterStream : MemoryStream;
}
