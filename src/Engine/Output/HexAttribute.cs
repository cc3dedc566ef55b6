using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CloudMem.Engine.Output;

/// <summary>
/// Marks a numeric row property (address, offset, size, mask; <c>ulong</c>, <c>long</c>, <c>uint</c>, <c>int</c>,
/// <c>ushort</c>, <c>byte</c> or their nullable forms) that people read in hex. The value stays a number in the row;
/// the renderers write it as <c>0x1F000</c> (upper case digits) in tables, CSV and JSON. Use
/// <c>[property: Hex]</c> on a positional record parameter.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field, AllowMultiple = false)]
public sealed class HexAttribute : JsonConverterAttribute
{
    /// <inheritdoc />
    public override JsonConverter? CreateConverter(Type typeToConvert)
    {
        ArgumentNullException.ThrowIfNull(typeToConvert);
        Type? inner = Nullable.GetUnderlyingType(typeToConvert);
        Type type = inner ?? typeToConvert;
        JsonConverter converter = type == typeof(ulong) ? new HexConverter<ulong>(v => v, s => s)
            : type == typeof(long) ? new HexConverter<long>(v => unchecked((ulong)v), s => unchecked((long)s))
            : type == typeof(uint) ? new HexConverter<uint>(v => v, s => checked((uint)s))
            : type == typeof(int) ? new HexConverter<int>(v => unchecked((uint)v), s => unchecked((int)checked((uint)s)))
            : type == typeof(ushort) ? new HexConverter<ushort>(v => v, s => checked((ushort)s))
            : type == typeof(byte) ? new HexConverter<byte>(v => v, s => checked((byte)s))
            : throw new InvalidOperationException($"[Hex] does not apply to {typeToConvert.Name}");
        return converter;
    }

    /// <summary>The text of a hex-rendered value: <c>0x</c> and upper-case digits.</summary>
    public static string Format(object value) => value switch
    {
        ulong u => Hex.Of(u),
        long l => Hex.Of(unchecked((ulong)l)),
        uint u => Hex.Of(u),
        int i => Hex.Of(unchecked((uint)i)),
        ushort s => Hex.Of(s),
        byte b => Hex.Of(b),
        _ => throw new InvalidOperationException($"[Hex] does not apply to {value.GetType().Name}"),
    };

    private sealed class HexConverter<T>(Func<T, ulong> toBits, Func<ulong, T> fromBits) : JsonConverter<T>
    {
        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Number)
            {
                return fromBits(reader.GetUInt64());
            }
            string text = reader.GetString() ?? throw new JsonException("expected a hex string");
            return text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                && ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong value)
                ? fromBits(value)
                : throw new JsonException($"'{text}' is not a 0x-prefixed hex number");
        }

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options)
            => writer.WriteStringValue(Hex.Of(toBits(value)));
    }
}

/// <summary>Writes times as every plugin prints them: UTC ISO 8601 with 100 ns digits (<c>2024-07-07T09:30:02.0000000Z</c>).</summary>
public sealed class UtcTimeConverter : JsonConverter<DateTimeOffset>
{
    /// <summary>The text of a time.</summary>
    public static string Format(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => DateTimeOffset.Parse(reader.GetString() ?? throw new JsonException("expected a time"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);

    /// <inheritdoc />
    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStringValue(Format(value));
    }
}
