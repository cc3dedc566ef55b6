using System.Globalization;
using System.Text.Json;

namespace CloudMem.Connectors.Triggers;

/// <summary>A JSON element with the path it was reached by, so every error names the field.</summary>
internal readonly record struct JsonAt(JsonElement Element, string Path)
{
    public bool IsObject => Element.ValueKind == JsonValueKind.Object;

    public JsonAt? Optional(string name)
    {
        if (Element.ValueKind != JsonValueKind.Object)
        {
            return null;
        }
        foreach (JsonProperty property in Element.EnumerateObject())
        {
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase) && property.Value.ValueKind != JsonValueKind.Null)
            {
                return new JsonAt(property.Value, $"{Path}.{name}");
            }
        }
        return null;
    }

    public JsonAt Required(string name)
    {
        if (Element.ValueKind != JsonValueKind.Object)
        {
            throw new TriggerEventException(Path, $"expected an object, found {Kind(Element)}");
        }
        return Optional(name) ?? throw new TriggerEventException($"{Path}.{name}", "missing");
    }

    public string? OptionalString(string name) => Optional(name) is { } value ? value.String() : null;

    public string RequiredString(string name) => Required(name).String();

    public string String()
    {
        string? text = Element.ValueKind switch
        {
            JsonValueKind.String => Element.GetString(),
            JsonValueKind.Number => Element.GetRawText(),
            _ => throw new TriggerEventException(Path, $"expected a string, found {Kind(Element)}"),
        };
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new TriggerEventException(Path, "empty");
        }
        if (text.Length > 2048 || text.Any(char.IsControl))
        {
            throw new TriggerEventException(Path, "longer than 2048 characters or has control characters");
        }
        return text.Trim();
    }

    public double Number()
    {
        if (Element.ValueKind == JsonValueKind.Number && Element.TryGetDouble(out double value))
        {
            return value;
        }
        if (Element.ValueKind == JsonValueKind.String && double.TryParse(Element.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out value))
        {
            return value;
        }
        throw new TriggerEventException(Path, $"expected a number, found {Kind(Element)}");
    }

    public IEnumerable<JsonAt> Items()
    {
        if (Element.ValueKind != JsonValueKind.Array)
        {
            throw new TriggerEventException(Path, $"expected an array, found {Kind(Element)}");
        }
        int i = 0;
        foreach (JsonElement item in Element.EnumerateArray())
        {
            yield return new JsonAt(item, $"{Path}[{i++}]");
        }
    }

    private static string Kind(JsonElement element) => element.ValueKind.ToString().ToLowerInvariant();
}
