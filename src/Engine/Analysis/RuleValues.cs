using System.Globalization;
using System.Text.Json;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// The values rules compare: a rule's JSON value converted once, at load, to the column's kind (integers as
/// <see cref="decimal"/> so that every 64-bit address fits, reals as <see cref="double"/>, enums as their name,
/// times as <see cref="DateTimeOffset"/>), and a row's value converted the same way when compared.
/// </summary>
internal static class RuleValues
{
    public static bool IsInteger(Type type)
        => type == typeof(int) || type == typeof(long) || type == typeof(uint) || type == typeof(ulong)
           || type == typeof(short) || type == typeof(ushort) || type == typeof(byte) || type == typeof(sbyte);

    public static bool IsOrdered(Type type)
        => IsInteger(type) || type == typeof(double) || type == typeof(float) || type == typeof(DateTimeOffset) || type == typeof(TimeSpan);

    /// <summary>The rule value <paramref name="value"/> for a column of <paramref name="type"/>.</summary>
    /// <exception cref="RuleException">It does not fit the column.</exception>
    public static object Convert(JsonElement value, Type type, string at)
    {
        if (IsInteger(type))
        {
            if (value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && decimal.Truncate(d) == d)
            {
                return d;
            }
            if (value.ValueKind == JsonValueKind.String && value.GetString() is { } s && s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                && ulong.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong hex))
            {
                return (decimal)hex;
            }
            throw new RuleException($"{at}: {value.GetRawText()} is not an integer (a number or \"0x...\")");
        }
        if (type == typeof(double) || type == typeof(float) || type == typeof(TimeSpan))
        {
            return value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw new RuleException($"{at}: {value.GetRawText()} is not a number");
        }
        if (type == typeof(bool))
        {
            return value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : throw new RuleException($"{at}: {value.GetRawText()} is not true or false");
        }
        if (type.IsEnum)
        {
            string? name = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            string? known = Enum.GetNames(type).FirstOrDefault(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase));
            return known ?? throw new RuleException($"{at}: {value.GetRawText()} is not one of {string.Join(", ", Enum.GetNames(type))}");
        }
        if (type == typeof(DateTimeOffset))
        {
            return value.ValueKind == JsonValueKind.String && DateTimeOffset.TryParse(value.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out DateTimeOffset t)
                ? t
                : throw new RuleException($"{at}: {value.GetRawText()} is not an ISO 8601 time");
        }
        if (type == typeof(string))
        {
            return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw new RuleException($"{at}: {value.GetRawText()} is not a string");
        }
        throw new RuleException($"{at}: a {type.Name} column cannot be compared (use regex)");
    }

    /// <summary>A row value in the form <see cref="Convert"/> gives rule values.</summary>
    public static object Normal(object value) => value switch
    {
        int or long or uint or ulong or short or ushort or byte or sbyte => System.Convert.ToDecimal(value, CultureInfo.InvariantCulture),
        float f => (double)f,
        TimeSpan t => t.TotalSeconds,
        Enum e => e.ToString(),
        _ => value,
    };

    public static bool Equal(object value, object? rule)
    {
        object normal = Normal(value);
        return normal is string s && rule is string r && value is Enum
            ? string.Equals(s, r, StringComparison.OrdinalIgnoreCase)
            : Equals(normal, rule);
    }

    public static int Compare(object value, object rule) => Normal(value) is IComparable c && c.GetType() == rule.GetType() ? c.CompareTo(rule) : 0;

    /// <summary>The bits of an integer value (negative values as two's complement).</summary>
    public static ulong Bits(object value)
    {
        decimal d = value is decimal x ? x : (decimal)Normal(value);
        return d < 0 ? unchecked((ulong)(long)d) : (ulong)d;
    }
}
