using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Pipeline;

namespace FineTune.Core.Data;

/// <summary>
/// Turns source records into conversations by the format type and its column mapping, reporting every record that
/// does not fit (with its index, line and field) to the collector instead of stopping at the first.
/// </summary>
/// <remarks>
/// alpaca (as LLaMA-Factory defines it): a system message (the record's own <c>system</c>, else
/// <c>system_prompt</c>, else none), the <c>history</c> pairs as user/assistant turns, a user message of
/// <c>instruction + input</c> joined with nothing in between, and an assistant message of <c>output</c>. The plain
/// join is what the reference tutorial (self-llm, huanhuan) does; for its data, where input is always empty, it is
/// simply the instruction. Datasets whose input needs a separator should put it in the data.
/// <para>sharegpt: <c>conversations</c> of <c>{from, value}</c>, roles human/user, gpt/assistant, system plus
/// those named in <c>roles</c>; a leading system message wins over the <c>system</c> column.</para>
/// <para>openai: <c>messages</c> of <c>{role, content}</c>, with OpenAI's optional keys; <c>weight</c> (0 or 1) on
/// assistant messages is kept. In csv a list column holds JSON text.</para>
/// <para>text: the <c>text</c> column as it is.</para>
/// </remarks>
internal sealed class RecordMapper
{
    private static readonly string[] OpenAiRoles = ["system", "user", "assistant", "tool", "function"];
    private static readonly string[] OpenAiMessageKeys = ["role", "content", "name", "weight", "tool_calls",
        "function_call", "tool_call_id"];

    private readonly FormatSettings _settings;
    private readonly Dictionary<string, string> _columns = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _shareGptRoles = new(StringComparer.Ordinal)
    {
        ["human"] = "user", ["user"] = "user", ["gpt"] = "assistant", ["assistant"] = "assistant",
            ["system"] = "system",
    };

    public RecordMapper(FormatSettings settings)
    {
        _settings = settings;
        foreach (var field in FormatSettings.FieldsOfType[settings.Type])
            _columns[field] = StandardColumn(settings.Type, field);
        foreach (var (field, column) in settings.Columns.Set()) _columns[field] = column;
        foreach (var (role, name) in settings.Roles.Set()) _shareGptRoles[name] = role;
    }

    public string Type => _settings.Type;

    /// <summary>The column that holds <paramref name="field"/> in the data.</summary>
    public string Column(string field) => _columns[field];

    /// <summary>The fields every record must have, with their columns.</summary>
    public IEnumerable<(string Field, string Column)> RequiredColumns => Required(Type).Select(f => (f, _columns[f]));

    /// <summary>Whether a JSON object is a record of this mapping (rather than an object wrapping the
    /// records).</summary>
    public bool LooksLikeRecord(JsonObject value) => RequiredColumns.Any(c => value.ContainsKey(c.Column));

    private static string[] Required(string type) => type switch
    {
        "alpaca" => ["instruction", "output"],
        "sharegpt" or "openai" => ["messages"],
        _ => ["text"],
    };

    private static string StandardColumn(string type, string field) => (type, field) switch
    {
        ("sharegpt", "messages") => "conversations",
        ("sharegpt", "role") => "from",
        ("sharegpt", "content") => "value",
        _ => field,
    };

    /// <summary>
    /// Reports once, for the whole file, a required column missing from a csv header or parquet schema; a file
    /// without it cannot map a single record. Returns false then.
    /// </summary>
    public bool CheckColumns(IReadOnlyList<string>? columns, DataCheckCollector problems)
    {
        if (columns is null) return true;
        var ok = true;
        foreach (var (field, column) in RequiredColumns.Where(c => !columns.Contains(c.Column)))
        {
            problems.Report(field == "messages" ? DataCheckCategory.MissingMessages : DataCheckCategory.MissingField,
                -1,
                $"the file has no column '{column}' for field '{field}' (its columns: {string.Join(", ", columns)}); " +
                $"set format.columns.{field} to the column that holds it",
                columns.Count > 0 ? 1 : 0, 0);
            ok = false;
        }
        return ok;
    }

    /// <summary>The record as a conversation, or null when it does not fit (the reasons are reported).</summary>
    public Conversation? Map(SourceRecord record, DataCheckCollector problems)
    {
        var fields = new Fields(this, record, problems);
        if (record.Value is not JsonObject)
        {
            fields.Report(DataCheckCategory.NotAnObject, record.Line, record.Column,
                $"must be an object with {string.Join(" and ", RequiredColumns.Select(c => $"'{c.Column}'"))}, found " +
                $"{KindOf(record.Value)}");
            return null;
        }
        var conversation = Type switch
        {
            "alpaca" => Alpaca(fields),
            "sharegpt" => ShareGpt(fields),
            "openai" => OpenAi(fields),
            _ => Text(fields),
        };
        return fields.HasErrors ? null : conversation;
    }

    private Conversation? Alpaca(Fields fields)
    {
        var instruction = fields.String("instruction", required: true);
        var input = fields.String("input", required: false);
        var output = fields.String("output", required: true);
        var system = fields.String("system", required: false);
        var history = fields.List("history", required: false);
        if (fields.HasErrors) return null;

        var messages = new List<ChatMessage>();
        AddSystem(messages, system);
        for (var i = 0; history is not null && i < history.Count; i++)
        {
            if (history[i] is JsonArray { Count: 2 } pair && pair[0] is JsonValue user
                && user.TryGetValue<string>(out var userText)
                && pair[1] is JsonValue answer && answer.TryGetValue<string>(out var answerText))
            {
                messages.Add(new ChatMessage("user", userText));
                messages.Add(new ChatMessage("assistant", answerText));
            }
            else fields.Report(DataCheckCategory.WrongType, "history",
                $"{fields.Name("history")} item {i} must be a [user, assistant] pair of strings, found " +
                $"{KindOf(history[i])}");
        }
        messages.Add(new ChatMessage("user", instruction + (input ?? "")));
        messages.Add(new ChatMessage("assistant", output!));
        return new Conversation(messages, fields.Record.Index);
    }

    private Conversation? ShareGpt(Fields fields)
    {
        var list = fields.List("messages", required: true);
        var system = fields.String("system", required: false);
        if (list is null) return null;

        var roleKey = _columns["role"];
        var contentKey = _columns["content"];
        var messages = new List<ChatMessage>(list.Count + 1);
        for (var i = 0; i < list.Count; i++)
        {
            var at = $"{fields.Name("messages")}[{i}]";
            if (list[i] is not JsonObject message)
            {
                fields.Report(DataCheckCategory.WrongType, "messages",
                    $"{at} must be an object with '{roleKey}' and '{contentKey}', found {KindOf(list[i])}");
                continue;
            }
            string? role = null;
            if (!TryString(message, roleKey, out var name))
                fields.Report(DataCheckCategory.UnrecognizedRole, "messages",
                    $"{at} has no '{roleKey}' (the role); set format.columns.role if the data names it differently");
            else if (!_shareGptRoles.TryGetValue(name, out role))
                fields.Report(DataCheckCategory.UnrecognizedRole, "messages",
                    $"{at}: role '{name}' is not recognized; expected one of " +
                    $"{string.Join(", ", _shareGptRoles.Keys.Order(StringComparer.Ordinal))} (name others with " +
                    $"format.roles.user, .assistant or .system)");
            if (!TryString(message, contentKey, out var content))
                fields.Report(DataCheckCategory.MissingContent, "messages",
                    $"{at} has no '{contentKey}' text; set format.columns.content if the data names it differently");
            if (role is not null && content is not null) messages.Add(new ChatMessage(role, content));
        }
        if (fields.HasErrors) return null;
        if (messages.Count == 0 || messages[0].Role != "system") AddSystem(messages, system);
        return new Conversation(messages, fields.Record.Index);
    }

    private Conversation? OpenAi(Fields fields)
    {
        var list = fields.List("messages", required: true);
        if (list is null) return null;
        if (list.Count == 0)
        {
            fields.Report(DataCheckCategory.MissingMessages, "messages", $"{fields.Name("messages")} is empty");
            return null;
        }

        var messages = new List<ChatMessage>(list.Count + 1);
        var callsDropped = false;
        for (var i = 0; i < list.Count; i++)
        {
            var at = $"{fields.Name("messages")}[{i}]";
            if (list[i] is not JsonObject message)
            {
                fields.Report(DataCheckCategory.WrongType, "messages",
                    $"{at} must be an object with 'role' and 'content', found {KindOf(list[i])}");
                continue;
            }
            foreach (var key in message.Select(p => p.Key).Where(k => !OpenAiMessageKeys.Contains(k)))
                fields.Report(DataCheckCategory.UnknownKey, "messages",
                    $"{at} has the key '{key}', which OpenAI does not allow in a message (allowed: " +
                    $"{string.Join(", ", OpenAiMessageKeys)})");

            if (!TryString(message, "role", out var role))
                fields.Report(DataCheckCategory.UnrecognizedRole, "messages", $"{at} has no 'role'");
            else if (!OpenAiRoles.Contains(role))
                fields.Report(DataCheckCategory.UnrecognizedRole, "messages",
                    $"{at}: role '{role}' is not recognized; expected one of {string.Join(", ", OpenAiRoles)}");

            var calls = message.ContainsKey("tool_calls") || message.ContainsKey("function_call");
            callsDropped |= calls;
            if (!TryString(message, "content", out var content))
            {
                // OpenAI allows an assistant message that only calls a tool to have no content.
                if (calls && message["content"] is null) content = "";
                else fields.Report(DataCheckCategory.MissingContent, "messages",
                    $"{at} has no 'content' text" + (message["content"] is { } other ? $" (found {KindOf(other)})"
                    : ""));
            }

            int? weight = null;
            // null: as if absent (parquet writes it so)
            if (message.TryGetPropertyValue("weight", out var weightNode) && weightNode is not null)
            {
                if (weightNode.GetValueKind() == JsonValueKind.Number && weightNode.ToJsonString() is "0" or "1"
                    && role == "assistant")
                    weight = weightNode.ToJsonString() == "1" ? 1 : 0;
                else fields.Report(DataCheckCategory.InvalidWeight, "messages", role == "assistant"
                    ? $"{at}: weight must be 0 or 1, found {weightNode.ToJsonString()}"
                    : $"{at}: weight is only allowed on assistant messages, not on role '{role}'");
            }
            if (role is not null && content is not null) messages.Add(new ChatMessage(role, content, weight));
        }
        if (fields.HasErrors) return null;
        if (callsDropped)
            fields.Report(DataCheckCategory.DroppedToolCalls, "messages",
                $"{fields.Name("messages")} carries tool_calls or function_call; only the content of those " +
                $"messages is kept");
        if (messages[0].Role != "system") AddSystem(messages, null);
        return new Conversation(messages, fields.Record.Index);
    }

    private static Conversation? Text(Fields fields)
    {
        var text = fields.String("text", required: true);
        return text is null ? null : new Conversation([], fields.Record.Index, text);
    }

    /// <summary>The record's own system prompt, else the setting, else none. A blank one counts as absent: datasets
    /// often carry "system": "" on every record.</summary>
    private void AddSystem(List<ChatMessage> messages, string? system)
    {
        var prompt = string.IsNullOrWhiteSpace(system) ? _settings.SystemPrompt : system;
        if (!string.IsNullOrEmpty(prompt)) messages.Insert(0, new ChatMessage("system", prompt));
    }

    private static bool TryString(JsonObject message, string key, out string value)
    {
        value = "";
        if (message[key] is JsonValue node && node.TryGetValue<string>(out var text)) value = text;
        else return false;
        return true;
    }

    internal static string KindOf(JsonNode? node) => node?.GetValueKind() switch
    {
        null or JsonValueKind.Null => "null",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        var kind => kind.ToString()!.ToLowerInvariant(),
    };

    /// <summary>The fields of one record, read through the mapping; every problem is reported with the record's
    /// position.</summary>
    private sealed class Fields(RecordMapper mapper, SourceRecord record, DataCheckCollector problems)
    {
        private readonly int _errorsBefore = problems.ErrorCount;

        public SourceRecord Record => record;

        public bool HasErrors => problems.ErrorCount > _errorsBefore;

        /// <summary>"field 'output'", or "field 'messages' (column 'conversations')" when the data names it
        /// otherwise.</summary>
        public string Name(string field) => mapper.Column(field) is var column && column == field ? $"field '{field}'"
            : $"field '{field}' (column '{column}')";

        public string? String(string field, bool required)
        {
            var value = Value(field, required);
            if (value is null) return null;
            if (value is JsonValue text && text.TryGetValue<string>(out var result)) return result;
            Report(DataCheckCategory.WrongType, field, $"{Name(field)} must be a string, found {KindOf(value)}");
            return null;
        }

        /// <summary>A list field; in csv the cell holds the list as JSON text.</summary>
        public JsonArray? List(string field, bool required)
        {
            var value = Value(field, required);
            if (value is JsonArray list) return list;
            if (value is JsonValue cell && cell.TryGetValue<string>(out var text) && record.FieldPositions is null)
            {
                if (string.IsNullOrWhiteSpace(text))
                {
                    if (required) Missing(field);
                    return null;
                }
                try
                {
                    if (JsonNode.Parse(text) is JsonArray parsed) return parsed;
                }
                catch (JsonException) { }
                Report(DataCheckCategory.WrongType, field, $"{Name(field)} must be a list (in csv: a JSON list in " +
                    $"the cell), found text that is not one");
                return null;
            }
            if (value is not null)
                Report(DataCheckCategory.WrongType, field, $"{Name(field)} must be a list, found {KindOf(value)}");
            return null;
        }

        private JsonNode? Value(string field, bool required)
        {
            var fields = (JsonObject)record.Value!;
            if (!fields.TryGetPropertyValue(mapper.Column(field), out var value) || value is null)
            {
                if (!required) return null;
                if (value is null && fields.ContainsKey(mapper.Column(field)))
                    Report(DataCheckCategory.WrongType, field,
                        $"{Name(field)} must be a {(field == "messages" ? "list" : "string")}, found null");
                else Missing(field);
                return null;
            }
            return value;
        }

        private void Missing(string field)
        {
            var column = mapper.Column(field);
            var hint = column == field
                ? $"set format.columns.{field} if the data names it differently"
                : $"the mapping expects column '{column}'; set format.columns.{field}";
            Report(field == "messages" ? DataCheckCategory.MissingMessages : DataCheckCategory.MissingField, null,
                $"field '{field}' is missing ({hint})");
        }

        /// <summary>Reports at the field's value when the reader knows where it is, else at the record.</summary>
        public void Report(DataCheckCategory category, string? field, string message)
        {
            var (line, column) = field is null ? (record.Line, record.Column) : record.PositionOf(mapper.Column(field));
            Report(category, line, column, message);
        }

        public void Report(DataCheckCategory category, int line, int column, string message) =>
            problems.Report(category, record.Index, $"record {record.Index}: {message}", line, column);
    }
}
