using System.Collections;
using System.Globalization;
using System.Reflection;
using CloudMem.Engine.Output;

namespace CloudMem.Engine.Plugins;

/// <summary>A row that carries more than one line of detail (a hexdump, a disassembly): tables print it under the
/// summary; JSON, JSON Lines and CSV keep it in the row's own list columns.</summary>
public interface IRowDetail
{
    /// <summary>The heading of the row's detail block.</summary>
    string DetailTitle { get; }

    /// <summary>The detail lines.</summary>
    IEnumerable<string> DetailLines { get; }
}

/// <summary>Typed rows of one plugin, as data: what <c>analyze</c>, the case database and the writers read.</summary>
public interface IRowsReport : IReport
{
    /// <summary>The plugin name (the table title).</summary>
    string Title { get; }

    /// <summary>The row type (a record; its public properties are the columns).</summary>
    Type RowType { get; }

    /// <summary>The rows.</summary>
    IReadOnlyList<object> BoxedRows { get; }

    /// <summary>The columns: name, CLR type, and whether people read it in hex.</summary>
    IReadOnlyList<RowColumn> Columns { get; }
}

/// <summary>One column of a row type.</summary>
/// <param name="Name">The property name (JSON: lowerCamelCase of it).</param>
/// <param name="Type">The property's type (nullable for absent values).</param>
/// <param name="Hex">Rendered as <c>0x...</c> (<see cref="HexAttribute"/>).</param>
public sealed record RowColumn(string Name, Type Type, bool Hex)
{
    internal PropertyInfo Property { get; init; } = null!;

    /// <summary>The value of this column in <paramref name="row"/>.</summary>
    public object? ValueOf(object row) => Property.GetValue(row);

    /// <summary>The text of this column in <paramref name="row"/>, as tables and CSV print it ("-" when absent).</summary>
    public string CellOf(object row) => Cell(ValueOf(row), Hex);

    /// <summary>The columns of a row type: its public instance properties in declaration order (the detail members of
    /// <see cref="IRowDetail"/> excluded).</summary>
    internal static RowColumn[] Of(Type rowType) => rowType.GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is { IsPublic: true }
            && p.Name is not nameof(IRowDetail.DetailTitle) and not nameof(IRowDetail.DetailLines))
        .Select(p => new RowColumn(p.Name, p.PropertyType, p.GetCustomAttribute<HexAttribute>() is not null) { Property = p })
        .ToArray();

    internal static string Cell(object? value, bool hex) => value switch
    {
        null => "-",
        string s => s,
        bool b => b ? "yes" : "no",
        DateTimeOffset t => UtcTimeConverter.Format(t),
        _ when hex && value is not IEnumerable => HexAttribute.Format(value),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        IEnumerable e => string.Join(' ', e.Cast<object?>().Select(v => Cell(v, hex))),
        _ => value.ToString() ?? "-",
    };
}

/// <summary>
/// A plugin's typed rows as a report: columns are the record's properties in declaration order (style C14); values
/// stay typed (numbers, times, enums) and the writers render them: hex for <see cref="HexAttribute"/> columns, UTC ISO
/// 8601 for times, "-" (tables, CSV) or null (JSON) for absent values. Notes (why a walk stopped, doubts) reach every
/// format: under the table, in JSON's <c>notes</c>, as <c>{"note": ...}</c> lines in JSON Lines, and on the
/// diagnostics stream for CSV (whose one header must stay one table).
/// </summary>
public sealed class RowsReport<TRow>(string title, IReadOnlyList<TRow> rows, IReadOnlyList<string>? notes = null) : IRowsReport
    where TRow : notnull
{
    private static readonly RowColumn[] s_columns = RowColumn.Of(typeof(TRow));

    /// <summary>The rows.</summary>
    public IReadOnlyList<TRow> Rows { get; } = rows;

    /// <inheritdoc />
    public IReadOnlyList<string> Notes { get; } = notes ?? [];

    /// <inheritdoc />
    public string Title { get; } = title;

    /// <inheritdoc />
    public Type RowType => typeof(TRow);

    /// <inheritdoc />
    public IReadOnlyList<object> BoxedRows => [.. Rows.Cast<object>()];

    /// <inheritdoc />
    public IReadOnlyList<RowColumn> Columns => s_columns;

    /// <summary>The same report with only the rows that satisfy <paramref name="keep"/> (notes kept).</summary>
    public RowsReport<TRow> Where(Func<TRow, bool> keep) => new(Title, [.. Rows.Where(keep)], Notes);

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        bool detailed = typeof(IRowDetail).IsAssignableFrom(typeof(TRow));
        RowColumn[] shown = detailed ? [.. s_columns.Where(c => c.Type == typeof(string) || !typeof(IEnumerable).IsAssignableFrom(c.Type))] : s_columns;
        yield return new TableSection(Title, [.. shown.Select(c => c.Name)],
            [.. Rows.Select(r => (IReadOnlyList<string>)[.. shown.Select(c => c.CellOf(r))])]);
        if (detailed)
        {
            foreach (IRowDetail row in Rows.Cast<IRowDetail>())
            {
                List<string> lines = [.. row.DetailLines];
                yield return new TableSection(row.DetailTitle, [""], [.. (lines.Count == 0 ? ["(not readable)"] : lines).Select(l => (IReadOnlyList<string>)[l])]);
            }
        }
    }

    /// <inheritdoc />
    public IEnumerable<TableSection> ToCsvTables() => [new TableSection(Title, [.. s_columns.Select(c => c.Name)],
        [.. Rows.Select(r => (IReadOnlyList<string>)[.. s_columns.Select(c => c.CellOf(r))])])];

    /// <inheritdoc />
    public object ToJsonModel() => new { title = Title, rows = Rows, notes = Notes };

    /// <inheritdoc />
    public IEnumerable<object>? ToJsonLines() => Rows.Cast<object>().Concat(Notes.Select(n => (object)new { note = n }));
}
