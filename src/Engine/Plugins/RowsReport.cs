using System.Collections;
using System.Globalization;
using System.Reflection;
using CloudMem.Engine.Output;

namespace CloudMem.Engine.Plugins;

/// <summary>
/// A plugin's typed rows as a report: columns are the record's properties in declaration order (style C14);
/// table, JSON, JSON Lines and CSV are generic over the row type.
/// </summary>
public sealed class RowsReport<TRow>(string title, IReadOnlyList<TRow> rows, IReadOnlyList<string>? notes = null) : IReport
    where TRow : notnull
{
    private static readonly PropertyInfo[] s_properties = typeof(TRow).GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetIndexParameters().Length == 0)
        .ToArray();

    /// <summary>The rows.</summary>
    public IReadOnlyList<TRow> Rows { get; } = rows;

    /// <summary>Remarks printed under the table (e.g. doubts about a smeared list).</summary>
    public IReadOnlyList<string> Notes { get; } = notes ?? [];

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        string[] columns = s_properties.Select(p => p.Name).ToArray();
        yield return new TableSection(title, columns,
            Rows.Select(r => (IReadOnlyList<string>)s_properties.Select(p => Cell(p.GetValue(r))).ToArray()).ToList());
        if (Notes.Count > 0)
        {
            yield return new TableSection("Notes", [""], Notes.Select(n => (IReadOnlyList<string>)new[] { n }).ToList());
        }
    }

    /// <inheritdoc />
    public object ToJsonModel() => new { title, rows = Rows, notes = Notes };

    /// <inheritdoc />
    public IEnumerable<object>? ToJsonLines() => Rows.Cast<object>();

    private static string Cell(object? value) => value switch
    {
        null => "-",
        string s => s,
        bool b => b ? "yes" : "no",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IEnumerable e => string.Join(' ', e.Cast<object?>().Select(Cell)),
        _ => value.ToString() ?? "-",
    };
}
