using System.Data.Common;
using System.Globalization;
using System.Numerics;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using DuckDB.NET.Data;

namespace CloudMem.Engine.Analysis;

/// <summary>A fleet question that cannot be answered: no case Parquet files under the directory, or SQL DuckDB refuses.
/// The message is one line.</summary>
public sealed class FleetQueryException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The case Parquet files of a fleet case (<c>CASE/captures/ID/*.parquet</c>) or of one <c>analyze</c> case
/// (<c>CASE/*.parquet</c>) as DuckDB views named after the tables of <see cref="CaseParquet.Tables"/> (<c>captures</c>,
/// <c>findings</c>, <c>processes</c>, <c>connections</c>, <c>yara</c>, <c>runs</c>), each a <c>read_parquet</c> over the files
/// that exist (<c>union_by_name</c>, so files written by an older schema still read); a table with no file is an empty view
/// with the same columns. DuckDB runs embedded and in memory; nothing is written. Not thread-safe.
/// </summary>
public sealed class FleetCase : IDisposable
{
    private readonly DuckDBConnection _connection;

    private FleetCase(string directory, IReadOnlyDictionary<string, IReadOnlyList<string>> files, DuckDBConnection connection)
    {
        Directory = directory;
        Files = files;
        _connection = connection;
    }

    /// <summary>The case directory.</summary>
    public string Directory { get; }

    /// <summary>The Parquet files of each table (absent tables have none).</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Files { get; }

    /// <summary>Finds the Parquet files under <paramref name="directory"/> and creates the views.</summary>
    /// <exception cref="FleetQueryException">The directory does not exist or holds no case Parquet file.</exception>
    public static FleetCase Open(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!System.IO.Directory.Exists(directory))
        {
            throw new FleetQueryException($"{directory}: no such case directory");
        }
        string captures = Path.Combine(directory, "captures");
        var files = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (ParquetTableInfo table in CaseParquet.Tables)
        {
            IEnumerable<string> found = File.Exists(Path.Combine(directory, table.FileName)) ? [Path.Combine(directory, table.FileName)] : [];
            if (System.IO.Directory.Exists(captures))
            {
                found = found.Concat(System.IO.Directory.EnumerateDirectories(captures).Order(StringComparer.Ordinal)
                    .Select(d => Path.Combine(d, table.FileName)).Where(File.Exists));
            }
            files[table.Name] = [.. found.Select(Path.GetFullPath)];
        }
        if (files.Values.All(f => f.Count == 0))
        {
            throw new FleetQueryException($"{directory}: no case Parquet files ({string.Join(", ", CaseParquet.Tables.Select(t => t.FileName))}) in it or in its captures/*/ (cases written by cloudmem analyze have them)");
        }
        var connection = new DuckDBConnection("DataSource=:memory:");
        try
        {
            connection.Open();
            Execute(connection, "SET autoinstall_known_extensions = false");
            foreach (ParquetTableInfo table in CaseParquet.Tables)
            {
                Execute(connection, $"CREATE VIEW {table.Name} AS " + (files[table.Name].Count > 0
                    ? $"SELECT * FROM read_parquet([{string.Join(", ", files[table.Name].Select(Literal))}], union_by_name = true)"
                    : "SELECT " + string.Join(", ", table.Columns.Select(c => $"CAST(NULL AS {DuckDbType(c.Type)}) AS {c.Name}")) + " WHERE false"));
            }
        }
        catch (DuckDBException e)
        {
            connection.Dispose();
            throw new FleetQueryException($"{directory}: cannot read its Parquet files: {OneLine(e.Message)}", e);
        }
        return new FleetCase(directory, files, connection);
    }

    /// <summary>Runs <paramref name="sql"/> (DuckDB SQL over the views; <c>$1</c>, <c>$2</c>... are
    /// <paramref name="parameters"/>) and returns its result as a report titled <paramref name="title"/>.</summary>
    /// <exception cref="FleetQueryException">DuckDB refused or failed the statement (its message, one line).</exception>
    public QueryReport Query(string sql, string title = "query", params object[] parameters)
    {
        ArgumentNullException.ThrowIfNull(sql);
        ArgumentNullException.ThrowIfNull(parameters);
        try
        {
            using DuckDBCommand command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (object parameter in parameters)
            {
                command.Parameters.Add(new DuckDBParameter(parameter));
            }
            using DbDataReader reader = command.ExecuteReader();
            string[] columns = [.. Enumerable.Range(0, reader.FieldCount).Select(reader.GetName)];
            var rows = new List<IReadOnlyList<object?>>();
            while (reader.Read())
            {
                rows.Add([.. Enumerable.Range(0, columns.Length).Select(i => reader.IsDBNull(i) ? null : Normalize(reader.GetValue(i)))]);
            }
            return new QueryReport(title, columns, rows);
        }
        catch (DuckDBException e)
        {
            throw new FleetQueryException($"{Directory}: {OneLine(e.Message)}", e);
        }
    }

    /// <summary>The value of a one-row, one-column query (null when no row or null).</summary>
    public object? Scalar(string sql, params object[] parameters) => Query(sql, "scalar", parameters) is { Rows.Count: > 0 } r ? r.Rows[0][0] : null;

    /// <inheritdoc />
    public void Dispose() => _connection.Dispose();

    /// <summary>The DuckDB type a column of <paramref name="type"/> reads as.</summary>
    public static string DuckDbType(ParquetColumnType type) => type switch
    {
        ParquetColumnType.String => "VARCHAR",
        ParquetColumnType.Int64 => "BIGINT",
        ParquetColumnType.Double => "DOUBLE",
        ParquetColumnType.Boolean => "BOOLEAN",
        _ => "TIMESTAMPTZ",
    };

    private static void Execute(DuckDBConnection connection, string sql)
    {
        using DuckDBCommand command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static string Literal(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";

    /// <summary>DuckDB's messages are several lines (the error, the statement, a caret): one line of them.</summary>
    private static string OneLine(string message)
        => string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>Values the writers render: times as UTC instants, HUGEINT (sum of BIGINT) as long when it fits.</summary>
    private static object Normalize(object value) => value switch
    {
        DateTime t => new DateTimeOffset(t.Kind == DateTimeKind.Local ? t.ToUniversalTime() : DateTime.SpecifyKind(t, DateTimeKind.Utc)),
        DateTimeOffset t => t.ToUniversalTime(),
        BigInteger b => b >= long.MinValue && b <= long.MaxValue ? (long)b : b.ToString(CultureInfo.InvariantCulture),
        _ => value,
    };
}

/// <summary>The result of a fleet query: named columns and rows of typed values (null when absent), printed like plugin
/// output (tables, CSV, JSON with one object per row keyed by column name, JSON Lines).</summary>
/// <param name="Title">The table title.</param>
/// <param name="Columns">The column names, as the query named them.</param>
/// <param name="Rows">The rows (one value per column).</param>
public sealed record QueryReport(string Title, IReadOnlyList<string> Columns, IReadOnlyList<IReadOnlyList<object?>> Rows) : IReport
{
    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
        => [new TableSection(Title, Columns, [.. Rows.Select(r => (IReadOnlyList<string>)[.. r.Select(v => RowColumn.Cell(v, hex: false))])])];

    /// <inheritdoc />
    public object ToJsonModel() => new { title = Title, columns = Columns, rows = Objects() };

    /// <inheritdoc />
    public IEnumerable<object>? ToJsonLines() => Objects();

    private List<object> Objects() => [.. Rows.Select(r =>
    {
        var row = new Dictionary<string, object?>(StringComparer.Ordinal);
        for (int i = 0; i < Columns.Count; i++)
        {
            string name = Columns[i];
            for (int n = 2; row.ContainsKey(name); n++)
            {
                name = Columns[i] + "_" + n.ToString(CultureInfo.InvariantCulture);   // SELECT a.pid, b.pid: both kept
            }
            row[name] = r[i];
        }
        return (object)row;
    })];
}
