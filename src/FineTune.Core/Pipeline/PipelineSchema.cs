using System.Text.Json;
using System.Text.Json.Nodes;

namespace FineTune.Core.Pipeline;

/// <summary>
/// The JSON Schema of pipeline files, generated from the same settings classes the loader binds, so an editor
/// (VS Code with the YAML extension) completes and checks exactly what the tool accepts.
/// </summary>
internal static class PipelineSchema
{
    public const string Id = "https://finetune.dev/schema/pipeline.schema.json";

    public static string Generate()
    {
        var root = ObjectSchema(typeof(PipelineDefinition), new PipelineDefinition());
        root["$schema"] = "http://json-schema.org/draft-07/schema#";
        root["$id"] = Id;
        root["title"] = "dotnet finetune pipeline";
        return root.ToJsonString(JsonText.Indented);
    }

    private static JsonObject ObjectSchema(Type type, object defaults)
    {
        var properties = new JsonObject();
        var required = new JsonArray();
        foreach (var property in SettingsReflection.PropertiesOf(type))
        {
            var value = property.Property.GetValue(defaults);
            var schema = PropertySchema(property, value);
            properties[property.Key] = schema;
            if (property.IsRequired) required.Add(property.Key);
        }
        var result = new JsonObject { ["type"] = "object", ["additionalProperties"] = false,
            ["properties"] = properties };
        if (Attribute.GetCustomAttribute(type, typeof(DocAttribute)) is DocAttribute doc)
            result["description"] = doc.Text;
        if (required.Count > 0) result["required"] = required;
        return result;
    }

    private static JsonObject PropertySchema(SettingsReflection.SettingProperty property, object? defaultValue)
    {
        var type = Nullable.GetUnderlyingType(property.Type) ?? property.Type;
        JsonObject schema;
        if (type == typeof(string)) schema = new JsonObject { ["type"] = "string" };
        else if (type == typeof(int) || type == typeof(long)) schema = new JsonObject { ["type"] = "integer" };
        else if (type == typeof(double)) schema = new JsonObject { ["type"] = "number" };
        else if (type == typeof(bool)) schema = new JsonObject { ["type"] = "boolean" };
        else if (type == typeof(List<string>))
            schema = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["type"] = "string" } };
        else if (type == typeof(Dictionary<string, string>))
            schema = new JsonObject
            {
                ["type"] = "object",
                ["additionalProperties"] = new JsonObject { ["type"] = new JsonArray("string", "number", "boolean") }
            };
        else schema = ObjectSchema(type, defaultValue ?? Activator.CreateInstance(type)!);

        if (property.Doc is { } doc) schema["description"] = doc;
        if (property.OneOf is { } values)
            schema["enum"] = new JsonArray(values.Select(v => (JsonNode)JsonValue.Create(v)!).ToArray());
        if (property.Range is { } range)
        {
            if (double.IsFinite(range.Minimum))
                schema[range.ExclusiveMinimum ? "exclusiveMinimum" : "minimum"] = range.Minimum;
            if (double.IsFinite(range.Maximum))
                schema[range.ExclusiveMaximum ? "exclusiveMaximum" : "maximum"] = range.Maximum;
        }
        var plainDefault = defaultValue is null || SettingsReflection.IsSettingsObject(defaultValue.GetType()) ? null
            : SettingsReflection.ToPlainValue(defaultValue);
        if (plainDefault is string or bool or long or double)
            schema["default"] = JsonSerializer.SerializeToNode(plainDefault);
        // Numbers and booleans may also be written as a ${param} string, which the loader interpolates first.
        if (schema["type"]?.GetValue<string>() is "integer" or "number" or "boolean")
        {
            schema["type"] = new JsonArray(schema["type"]!.GetValue<string>(), "string");
            schema["pattern"] = @"\$\{[^}]+\}";
        }
        return schema;
    }
}
