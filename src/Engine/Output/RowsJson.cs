using System.Buffers;
using System.Collections;
using System.Collections.Concurrent;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Output;

/// <summary>
/// Writes a plugin's typed rows as JSON with a <see cref="Utf8JsonWriter"/>, byte for byte what
/// <see cref="JsonSerializer"/> writes with <see cref="ReportWriter"/>'s options, without building System.Text.Json's
/// reflection metadata for the row type (which JIT-compiles a few hundred generic methods and emits property accessors:
/// about 40 ms of CPU on every <c>-o json</c> command, more than a warm <c>windows.pslist</c> spends reading memory).
/// Values it has no rule for (nested records, byte arrays, enum values without a name, properties with their own
/// converter) go through <see cref="JsonSerializer"/> into the same writer, so the output never differs.
/// </summary>
internal static class RowsJson
{
    private static readonly ConcurrentDictionary<Type, Shape> s_shapes = new();

    /// <summary>Per value type met in a cell, whether this writer renders it itself: a list of simple elements, or an
    /// enum without [Flags] (decided once per type, not with reflection on every cell).</summary>
    private static readonly ConcurrentDictionary<Type, bool> s_simple = new();

    /// <summary>One JSON property of a row type: its name as written and how to get its value.</summary>
    private sealed record Member(JsonEncodedText Name, PropertyInfo Property, bool Hex);

    /// <summary>The JSON properties of a row type, in System.Text.Json's order; null when the type needs the serializer.</summary>
    private sealed record Shape(Member[]? Members);

    /// <summary>Writes <c>{"title": ..., "rows": [...], "notes": [...]}</c>.</summary>
    public static string Document(IRowsReport report, JsonSerializerOptions options)
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        using (var json = new Utf8JsonWriter(buffer, WriterOptions(options)))
        {
            json.WriteStartObject();
            json.WriteString("title", report.Title);
            json.WritePropertyName("rows");
            json.WriteStartArray();
            Shape shape = ShapeOf(report.RowType);
            foreach (object row in report.BoxedRows)
            {
                Row(json, row, report.RowType, shape, options);
            }
            json.WriteEndArray();
            json.WritePropertyName("notes");
            json.WriteStartArray();
            foreach (string note in report.Notes)
            {
                json.WriteStringValue(note);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>JSON Lines: one compact object per row, then <c>{"note": ...}</c> per note.</summary>
    public static IEnumerable<string> Lines(IRowsReport report, JsonSerializerOptions options)
    {
        Shape shape = ShapeOf(report.RowType);
        var buffer = new ArrayBufferWriter<byte>(4096);
        foreach (object row in report.BoxedRows)
        {
            buffer.ResetWrittenCount();
            using (var json = new Utf8JsonWriter(buffer, WriterOptions(options)))
            {
                Type type = row.GetType();   // JSON Lines serialises each row as what it is
                Row(json, row, type, type == report.RowType ? shape : ShapeOf(type), options);
            }
            yield return Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
        foreach (string note in report.Notes)
        {
            buffer.ResetWrittenCount();
            using (var json = new Utf8JsonWriter(buffer, WriterOptions(options)))
            {
                json.WriteStartObject();
                json.WriteString("note", note);
                json.WriteEndObject();
            }
            yield return Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
    }

    private static JsonWriterOptions WriterOptions(JsonSerializerOptions options) => new()
    {
        Indented = options.WriteIndented,
        IndentCharacter = options.IndentCharacter,
        IndentSize = options.IndentSize,
        NewLine = options.NewLine,
        Encoder = options.Encoder,
        MaxDepth = options.MaxDepth == 0 ? 64 : options.MaxDepth,
        SkipValidation = true,
    };

    private static void Row(Utf8JsonWriter json, object row, Type rowType, Shape shape, JsonSerializerOptions options)
    {
        if (shape.Members is null || row.GetType() != rowType)
        {
            JsonSerializer.Serialize(json, row, rowType, options);   // the serializer writes rows as their declared type
            return;
        }
        json.WriteStartObject();
        foreach (Member member in shape.Members)
        {
            json.WritePropertyName(member.Name);
            Value(json, member.Property.GetValue(row), member.Hex, member.Property.PropertyType, options);
        }
        json.WriteEndObject();
    }

    private static void Value(Utf8JsonWriter json, object? value, bool hex, Type declared, JsonSerializerOptions options)
    {
        switch (value)
        {
            case null: json.WriteNullValue(); break;
            case string s: json.WriteStringValue(s); break;
            case bool b: json.WriteBooleanValue(b); break;
            case DateTimeOffset t: json.WriteStringValue(UtcTimeConverter.Format(t)); break;
            case ulong or long or uint or int or ushort or byte when hex: json.WriteStringValue(HexAttribute.Format(value)); break;
            case ulong u: json.WriteNumberValue(u); break;
            case long l: json.WriteNumberValue(l); break;
            case uint u: json.WriteNumberValue(u); break;
            case int i: json.WriteNumberValue(i); break;
            case ushort u: json.WriteNumberValue(u); break;
            case short s: json.WriteNumberValue(s); break;
            case byte b: json.WriteNumberValue(b); break;
            case sbyte b: json.WriteNumberValue(b); break;
            case double d when double.IsFinite(d): json.WriteNumberValue(d); break;
            case float f when float.IsFinite(f): json.WriteNumberValue(f); break;
            case Enum e when IsSimple(e.GetType()) && Enum.IsDefined(e.GetType(), e):
                json.WriteStringValue(JsonNamingPolicy.CamelCase.ConvertName(e.ToString()));
                break;
            case IList list when list is not Array { Rank: > 1 } && value is not byte[] && IsSimple(value.GetType()):
                json.WriteStartArray();
                foreach (object? item in list)
                {
                    Value(json, item, hex: false, typeof(object), options);
                }
                json.WriteEndArray();
                break;
            default:
                JsonSerializer.Serialize(json, value, declared, options);
                break;
        }
    }

    private static bool IsSimple(Type type) => s_simple.GetOrAdd(type, static t => t.IsEnum ? t.GetCustomAttribute<FlagsAttribute>() is null : IsSimpleList(t));

    /// <summary>A list whose elements this writer renders itself (strings, numbers, booleans, times).</summary>
    private static bool IsSimpleList(Type type)
    {
        Type? element = type.IsArray ? type.GetElementType()
            : type.GetInterfaces().Append(type).FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>))?.GetGenericArguments()[0];
        element = element is null ? null : Nullable.GetUnderlyingType(element) ?? element;
        return element is not null && (element == typeof(string) || element == typeof(bool) || element == typeof(DateTimeOffset)
            || element == typeof(ulong) || element == typeof(long) || element == typeof(uint) || element == typeof(int)
            || element == typeof(ushort) || element == typeof(short) || element == typeof(byte) || element == typeof(sbyte));
    }

    private static Shape ShapeOf(Type rowType) => s_shapes.GetOrAdd(rowType, static type =>
    {
        var members = new List<Member>();
        foreach (PropertyInfo property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length != 0 || property.GetMethod is not { IsPublic: true })
            {
                continue;
            }
            if (property.GetCustomAttribute<JsonIgnoreAttribute>() is { } ignore)
            {
                if (ignore.Condition == JsonIgnoreCondition.Always)
                {
                    continue;
                }
                return new Shape(null);
            }
            JsonAttribute[] attributes = [.. property.GetCustomAttributes<JsonAttribute>()];
            bool hex = attributes.Any(a => a is HexAttribute);
            if (attributes.Any(a => a is not HexAttribute) || (hex && !IsHexable(property.PropertyType)))
            {
                return new Shape(null);   // a converter or naming of its own: the serializer decides
            }
            members.Add(new Member(JsonEncodedText.Encode(JsonNamingPolicy.CamelCase.ConvertName(property.Name)), property, hex));
        }
        // The serializer orders a type's own properties before those it inherits; row records inherit none but object's.
        return new Shape(type.BaseType is null || type.BaseType == typeof(object) ? [.. members] : null);
    });

    private static bool IsHexable(Type type)
    {
        Type t = Nullable.GetUnderlyingType(type) ?? type;
        return t == typeof(ulong) || t == typeof(long) || t == typeof(uint) || t == typeof(int) || t == typeof(ushort) || t == typeof(byte);
    }
}
