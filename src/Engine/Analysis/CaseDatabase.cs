using System.Collections;
using System.Globalization;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using Microsoft.Data.Sqlite;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// <c>case.sqlite</c>: one table per plugin that ran (named like the plugin with dots as underscores:
/// <c>windows_malfind</c>, <c>linux_sockstat</c>) with a <c>row_id</c>, the <c>row_key</c> evidence points at, and one
/// typed column per row column (integers, addresses and flags as INTEGER, reals as REAL, times as ISO 8601 UTC TEXT,
/// enums and strings as TEXT, lists as newline-separated TEXT); and the tables <c>findings</c>, <c>evidence</c>,
/// <c>timeline</c>, <c>runs</c>, <c>processes</c>, <c>connections</c>, <c>provenance</c>, <c>custody</c> and
/// <c>notes</c>. SQLite integers are signed 64-bit: an address at or above 2^63 (a Linux/Windows kernel address) is
/// stored as its two's-complement value, which <c>printf('0x%X', col)</c> prints as the address again.
/// </summary>
public static class CaseDatabase
{
    /// <summary>The table name of a plugin's rows.</summary>
    public static string TableName(string plugin)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        return plugin.Replace('.', '_').Replace('-', '_');
    }

    /// <summary>Writes <paramref name="report"/> into a new database at <paramref name="path"/> (which must not exist).</summary>
    /// <exception cref="IOException"><paramref name="path"/> exists.</exception>
    public static void Write(CaseReport report, string path)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(path);
        if (File.Exists(path))
        {
            throw new IOException($"{path} exists (a case database is never overwritten)");
        }
        var builder = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false };
        using var connection = new SqliteConnection(builder.ToString());
        connection.Open();
        using SqliteTransaction transaction = connection.BeginTransaction();
        foreach (IRowsReport table in report.Tables)
        {
            WriteTable(connection, transaction, table);
        }
        WriteFindings(connection, transaction, report.Findings);
        Insert(connection, transaction, "timeline", ["time TEXT", "unix_seconds INTEGER", "source TEXT", "kind TEXT", "description TEXT", "pid INTEGER"],
            report.Timeline.Select(e => new object?[] { UtcTimeConverter.Format(e.Time), e.Time.ToUnixTimeSeconds(), e.Source, e.Kind, e.Description, e.Pid }));
        Insert(connection, transaction, "runs", ["plugin TEXT", "elapsed_seconds REAL", "rows INTEGER", "error TEXT", "notes TEXT"],
            report.Runs.Select(r => new object?[] { r.Plugin, r.Elapsed.TotalSeconds, r.Rows, r.Error, string.Join('\n', r.Notes) }));
        Insert(connection, transaction, "processes", ["pid INTEGER", "ppid INTEGER", "name TEXT", "start TEXT", "command_line TEXT", "hidden INTEGER"],
            report.Processes.Select(p => new object?[] { p.Pid, p.Ppid, p.Name, p.Start is { } t ? UtcTimeConverter.Format(t) : null, p.CommandLine, p.Hidden }));
        Insert(connection, transaction, "connections", ["pid INTEGER", "process TEXT", "protocol TEXT", "local TEXT", "remote TEXT", "state TEXT"],
            report.Connections.Select(c => new object?[] { c.Pid, c.Process, c.Protocol, c.Local, c.Remote, c.State }));
        CaseProvenance p = report.Provenance;
        Insert(connection, transaction, "provenance", ["name TEXT", "value TEXT"], new (string, object?)[]
        {
            ("image", p.ImagePath), ("format", p.Format), ("bytes", p.Bytes), ("sha256", p.Sha256), ("os", p.Os), ("kernel", p.Kernel),
            ("analysed_at", UtcTimeConverter.Format(p.AnalysedAt)),
        }.Select(x => new[] { x.Item1, x.Item2 }));
        Insert(connection, transaction, "custody", ["position INTEGER", "name TEXT", "value TEXT"],
            (p.Custody ?? []).Select((kv, i) => new object?[] { i, kv.Key, kv.Value }));
        Insert(connection, transaction, "notes", ["note TEXT"], report.Notes.Select(n => new object?[] { n }));
        transaction.Commit();
    }

    private static void WriteFindings(SqliteConnection connection, SqliteTransaction transaction, IReadOnlyList<Finding> findings)
    {
        Insert(connection, transaction, "findings",
            ["id INTEGER PRIMARY KEY", "rule_id TEXT", "title TEXT", "severity TEXT", "severity_rank INTEGER", "technique TEXT", "confidence REAL",
             "summary TEXT", "pid INTEGER", "process TEXT"],
            findings.Select((f, i) => new object?[] { i + 1, f.RuleId, f.Title, f.Severity.ToString(), (int)f.Severity, f.Technique, f.Confidence, f.Summary, f.Pid, f.ProcessName }));
        Insert(connection, transaction, "evidence", ["finding_id INTEGER", "plugin TEXT", "table_name TEXT", "row_key TEXT", "row_json TEXT"],
            findings.SelectMany((f, i) => f.Evidence.Select(e => new object?[] { i + 1, e.Plugin, TableName(e.Plugin), e.RowKey, ReportWriter.ToJson(e.Row, indented: false) })));
    }

    private static void WriteTable(SqliteConnection connection, SqliteTransaction transaction, IRowsReport table)
    {
        IReadOnlyList<string> keys = PluginTables.Keys(table);
        IReadOnlyList<RowColumn> columns = table.Columns;
        IReadOnlyList<object> rows = table.BoxedRows;
        Insert(connection, transaction, TableName(table.Title),
            [.. new[] { "row_id INTEGER", "row_key TEXT" }.Concat(columns.Select(c => $"{c.Name} {SqlType(c.Type)}"))],
            rows.Select((row, i) => new object?[] { i, keys[i] }.Concat(columns.Select(c => SqlValue(c.ValueOf(row)))).ToArray()));
    }

    private static string SqlType(Type type)
    {
        Type t = Nullable.GetUnderlyingType(type) ?? type;
        return t == typeof(bool) || RuleValues.IsInteger(t) ? "INTEGER" : t == typeof(double) || t == typeof(float) || t == typeof(TimeSpan) ? "REAL" : "TEXT";
    }

    private static object? SqlValue(object? value) => value switch
    {
        null => null,
        ulong u => unchecked((long)u),
        uint or int or long or short or ushort or byte or sbyte => System.Convert.ToInt64(value, CultureInfo.InvariantCulture),
        bool b => b ? 1L : 0L,
        double or float => System.Convert.ToDouble(value, CultureInfo.InvariantCulture),
        TimeSpan span => span.TotalSeconds,
        DateTimeOffset time => UtcTimeConverter.Format(time),
        Enum e => e.ToString(),
        string s => s,
        IDictionary d => ReportWriter.ToJson(d, indented: false),
        IEnumerable e => string.Join('\n', e.Cast<object?>().Select(v => v?.ToString())),
        _ => value.ToString(),
    };

    private static void Insert(SqliteConnection connection, SqliteTransaction transaction, string table, IReadOnlyList<string> columns, IEnumerable<object?[]> rows)
    {
        using (SqliteCommand create = connection.CreateCommand())
        {
            create.Transaction = transaction;
            create.CommandText = $"CREATE TABLE \"{table}\" ({string.Join(", ", columns.Select(Quote))})";
            create.ExecuteNonQuery();
        }
        using SqliteCommand insert = connection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = $"INSERT INTO \"{table}\" VALUES ({string.Join(", ", columns.Select((_, i) => "$p" + i.ToString(CultureInfo.InvariantCulture)))})";
        SqliteParameter[] parameters = [.. columns.Select((_, i) => insert.Parameters.Add("$p" + i.ToString(CultureInfo.InvariantCulture), SqliteType.Text))];
        foreach (object?[] row in rows)
        {
            for (int i = 0; i < parameters.Length; i++)
            {
                object? value = row[i];
                parameters[i].SqliteType = value switch
                {
                    long or int or bool => SqliteType.Integer,
                    double => SqliteType.Real,
                    _ => SqliteType.Text,
                };
                parameters[i].Value = value switch
                {
                    null => DBNull.Value,
                    bool b => b ? 1L : 0L,
                    _ => value,
                };
            }
            insert.ExecuteNonQuery();
        }
    }

    /// <summary>A column definition with its name quoted ("name TYPE").</summary>
    private static string Quote(string definition)
    {
        int space = definition.IndexOf(' ', StringComparison.Ordinal);
        return $"\"{definition[..space]}\"{definition[space..]}";
    }
}
