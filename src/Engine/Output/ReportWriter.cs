using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Output;

/// <summary>Writes an <see cref="IReport"/> in any <see cref="OutputFormat"/>.</summary>
public static class ReportWriter
{
    private static readonly JsonSerializerOptions s_indented = Create(indented: true);
    private static readonly JsonSerializerOptions s_compact = Create(indented: false);

    private static JsonSerializerOptions Create(bool indented) => new()
    {
        WriteIndented = indented,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DictionaryKeyPolicy = null,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase), new UtcTimeConverter() },
    };

    /// <summary>
    /// Writes <paramref name="report"/> to <paramref name="writer"/>. Absent values are null in JSON and "-" in text.
    /// Notes go under the tables, into JSON's notes, as note lines in JSON Lines, and for CSV (one header, one table) to
    /// <paramref name="diagnostics"/> as <c>note: ...</c> lines (dropped when it is null).
    /// </summary>
    public static void Write(IReport report, OutputFormat format, TextWriter writer, TextWriter? diagnostics = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(writer);
        switch (format)
        {
            case OutputFormat.Json:
                writer.WriteLine(Json(report, indented: true));
                break;
            case OutputFormat.Jsonl when IsRows(report, out IRowsReport? table):
                foreach (string line in RowsJson.Lines(table, s_compact))
                {
                    writer.WriteLine(line);
                }
                break;
            case OutputFormat.Jsonl:
                IEnumerable<object>? lines = report.ToJsonLines();
                if (lines is null)
                {
                    writer.WriteLine(SerializerJson(report, indented: false));
                }
                else
                {
                    foreach (object line in lines)
                    {
                        writer.WriteLine(JsonSerializer.Serialize(line, line.GetType(), s_compact));
                    }
                }
                break;
            case OutputFormat.Csv:
                WriteCsv(report.ToCsvTables(), writer);
                foreach (string note in report.Notes)
                {
                    diagnostics?.WriteLine($"note: {note}");
                }
                break;
            default:
                WriteTables(report.Notes.Count == 0 ? report.ToTables()
                    : report.ToTables().Append(new TableSection("Notes", [""], [.. report.Notes.Select(n => (IReadOnlyList<string>)[n])])), writer);
                break;
        }
    }

    /// <summary>A plugin's typed rows (<see cref="RowsReport{TRow}"/>), written by <see cref="RowsJson"/> without the serializer's reflection.</summary>
    private static bool IsRows(IReport report, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IRowsReport? rows)
    {
        rows = report as IRowsReport;
        return rows is not null && report.GetType().IsGenericType && report.GetType().GetGenericTypeDefinition() == typeof(RowsReport<>);
    }

    /// <summary>The serializer's JSON of <paramref name="report"/>, compact or indented (what <see cref="RowsJson"/> must equal).</summary>
    internal static string SerializerJson(IReport report, bool indented) => JsonSerializer.Serialize(report.ToJsonModel(), indented ? s_indented : s_compact);

    /// <summary>The JSON <see cref="Write"/> prints for <paramref name="report"/>, compact or indented.</summary>
    internal static string Json(IReport report, bool indented)
        => IsRows(report, out IRowsReport? rows) ? RowsJson.Document(rows, indented ? s_indented : s_compact) : SerializerJson(report, indented);

    /// <summary>Serialises any object the way JSON output does.</summary>
    public static string ToJson(object value, bool indented = true) => JsonSerializer.Serialize(value, value.GetType(), indented ? s_indented : s_compact);

    private static void WriteTables(IEnumerable<TableSection> sections, TextWriter writer)
    {
        bool first = true;
        foreach (TableSection section in sections)
        {
            if (!first)
            {
                writer.WriteLine();
            }
            first = false;
            writer.WriteLine(section.Title);
            if (section.Rows.Count == 0)
            {
                writer.WriteLine("  (none)");
                continue;
            }
            int[] widths = new int[section.Columns.Count];
            for (int c = 0; c < widths.Length; c++)
            {
                widths[c] = section.Columns[c].Length;
                foreach (IReadOnlyList<string> row in section.Rows)
                {
                    widths[c] = Math.Max(widths[c], c < row.Count ? row[c].Length : 0);
                }
            }
            bool header = section.Columns.Any(c => c.Length > 0);
            if (header)
            {
                WriteRow(writer, section.Columns, widths);
                WriteRow(writer, widths.Select(w => new string('-', w)).ToArray(), widths);
            }
            foreach (IReadOnlyList<string> row in section.Rows)
            {
                WriteRow(writer, row, widths);
            }
        }
    }

    private static void WriteRow(TextWriter writer, IReadOnlyList<string> cells, int[] widths)
    {
        var line = new StringBuilder("  ");
        for (int c = 0; c < widths.Length; c++)
        {
            string cell = c < cells.Count ? cells[c] : "";
            line.Append(c == widths.Length - 1 ? cell : cell.PadRight(widths[c] + 2));
        }
        writer.WriteLine(line.ToString().TrimEnd());
    }

    private static void WriteCsv(IEnumerable<TableSection> sections, TextWriter writer)
    {
        bool first = true;
        foreach (TableSection section in sections)
        {
            if (!first)
            {
                writer.WriteLine();
            }
            first = false;
            writer.WriteLine(string.Join(',', new[] { "table" }.Concat(section.Columns.Select((c, i) => c.Length > 0 ? c : $"column{i + 1}")).Select(Escape)));
            foreach (IReadOnlyList<string> row in section.Rows)
            {
                writer.WriteLine(string.Join(',', new[] { section.Title }.Concat(row).Select(Escape)));
            }
        }
    }

    private static string Escape(string cell)
        => cell.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + cell.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : cell;
}
