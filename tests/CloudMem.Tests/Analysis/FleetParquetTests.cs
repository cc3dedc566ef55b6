using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CloudMem.Engine.Analysis;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// The case Parquet files of five real analyses (two Linux fixtures, three Windows builder images) laid out as a fleet
/// case: every capture has the six files; DuckDB reads them back with the column names and types of the documented schema
/// and with as many rows as each CaseReport has; hyparquet (an independent JavaScript reader) reads the same values and
/// types; the schema table of docs/ARCHITECTURE.md and the Athena DDL name exactly the columns the writer writes.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetParquetTests(FleetCases fleet)
{
    private static readonly string[] TableNames = ["captures", "findings", "processes", "connections", "yara", "runs"];

    [SkippableFact]
    public void Every_capture_has_the_six_files_and_duckdb_reads_the_reports_row_counts()
    {
        IReadOnlyDictionary<string, CaseReport> reports = fleet.Reports;
        Assert.Equal(TableNames, CaseParquet.Tables.Select(t => t.Name));
        foreach (string id in reports.Keys)
        {
            foreach (string table in TableNames)
            {
                Assert.True(File.Exists(Path.Combine(fleet.CaptureDirectory(id), table + ".parquet")), $"{id}/{table}.parquet");
            }
        }
        using FleetCase cases = FleetCase.Open(fleet.Case);
        Assert.All(TableNames, t => Assert.Equal(reports.Count, cases.Files[t].Count));
        Assert.Equal(reports.Keys.Order(StringComparer.Ordinal),
            cases.Query("SELECT capture_id FROM captures ORDER BY capture_id").Rows.Select(r => (string)r[0]!));
        foreach ((string id, CaseReport report) in reports)
        {
            Assert.Equal(report.Findings.Count, Count(cases, "findings", id));
            Assert.Equal(report.Processes.Count, Count(cases, "processes", id));
            Assert.Equal(report.Connections.Count, Count(cases, "connections", id));
            Assert.Equal(report.Runs.Count, Count(cases, "runs", id));
            Assert.Equal(report.Tables.Where(t => t.Title.Contains(".yarascan", StringComparison.Ordinal)).Sum(t => t.BoxedRows.Count), Count(cases, "yara", id));
            IReadOnlyList<object?> capture = cases.Query("SELECT os, bytes, findings_total, findings_critical, findings_high, plugins_run, analysed_at FROM captures WHERE capture_id = $1", "c", id).Rows.Single();
            Assert.Equal(report.Provenance.Os, capture[0]);
            Assert.Equal(report.Provenance.Bytes, capture[1]);
            Assert.Equal((long)report.Findings.Count, capture[2]);
            Assert.Equal((long)report.Findings.Count(f => f.Severity == Severity.Critical), capture[3]);
            Assert.Equal((long)report.Findings.Count(f => f.Severity == Severity.High), capture[4]);
            Assert.Equal((long)report.Runs.Count, capture[5]);
            // Milliseconds in the file: the instant the analysis recorded, truncated to the millisecond.
            Assert.Equal(report.Provenance.AnalysedAt.ToUnixTimeMilliseconds(), ((DateTimeOffset)capture[6]!).ToUnixTimeMilliseconds());
        }
        Assert.Equal(2L, cases.Scalar("SELECT count(*) FROM captures WHERE os = 'Linux'"));
        Assert.Equal(3L, cases.Scalar("SELECT count(*) FROM captures WHERE os = 'Windows'"));
        // A typed row survives the trip: the network scenario's reverse shell (powershell 6044 to 203.0.113.7:4444).
        IReadOnlyList<object?> shell = cases.Query("SELECT protocol, local_address, local_port, remote_port, pid, process FROM connections " +
            "WHERE capture_id = 'win-network' AND remote_address = '203.0.113.7'").Rows.Single();
        Assert.Equal(["TCPv4", "10.0.2.15", 49733L, 4444L, 6044L, "powershell.exe"], shell);
        // The rootkit's hidden sleep (truth.json pid 113) is a hidden process row.
        Assert.Equal(true, cases.Scalar("SELECT hidden FROM processes WHERE capture_id = 'linux-rootkit' AND pid = 113"));
    }

    [SkippableFact]
    public void Duckdb_sees_the_documented_column_names_and_types_in_every_file()
    {
        _ = fleet.Reports;
        using FleetCase cases = FleetCase.Open(fleet.Case);
        foreach (ParquetTableInfo table in CaseParquet.Tables)
        {
            // DESCRIBE reads the types from the files' own schema (all captures' files, unioned by name).
            QueryReport described = cases.Query($"DESCRIBE {table.Name}");
            Assert.Equal(table.Columns.Select(c => (c.Name, FleetCase.DuckDbType(c.Type) == "TIMESTAMPTZ" ? "TIMESTAMP WITH TIME ZONE" : FleetCase.DuckDbType(c.Type))),
                described.Rows.Select(r => ((string)r[0]!, (string)r[1]!)));
            Assert.All(table.Columns, c => Assert.Matches("^[a-z][a-z0-9_]*$", c.Name));
        }
    }

    [SkippableFact]
    public void Hyparquet_reads_the_same_rows_and_types_as_the_writer_wrote()
    {
        IReadOnlyDictionary<string, CaseReport> reports = fleet.Reports;
        string index = Emulators.Require(Path.Combine("hyparquet", "node_modules", "hyparquet", "src", "node.js"));
        string script = Path.Combine(Fixture.RepoRoot, "tests", "CloudMem.Tests", "Analysis", "read-parquet.mjs");

        using JsonDocument processes = Read(script, index, Path.Combine(fleet.CaptureDirectory("win-attack"), "processes.parquet"));
        JsonElement root = processes.RootElement;
        Assert.Equal(reports["win-attack"].Processes.Count, root.GetProperty("rows").GetInt32());
        Assert.Equal(["capture_id", "pid", "ppid", "name", "command_line", "create_time", "hidden"], root.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        JsonElement created = root.GetProperty("columns").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "create_time");
        Assert.Equal(("INT64", "TIMESTAMP", "MILLIS", true), (created.GetProperty("physical").GetString(), created.GetProperty("logical").GetString(),
            created.GetProperty("unit").GetString(), created.GetProperty("utc").GetBoolean()));
        Assert.Equal("INT64", root.GetProperty("columns")[1].GetProperty("physical").GetString());
        Assert.Equal("BOOLEAN", root.GetProperty("columns")[6].GetProperty("physical").GetString());
        CaseProcess rundll = reports["win-attack"].Processes.Single(p => p.Pid == 7312);
        JsonElement row = root.GetProperty("data").EnumerateArray().Single(r => r.GetProperty("pid").GetInt64() == 7312);
        Assert.Equal("win-attack", row.GetProperty("capture_id").GetString());
        Assert.Equal((rundll.Ppid, rundll.Name, rundll.Hidden), (row.GetProperty("ppid").GetInt64(), row.GetProperty("name").GetString(), row.GetProperty("hidden").GetBoolean()));
        Assert.Equal(rundll.Start!.Value.ToUnixTimeMilliseconds(), DateTimeOffset.Parse(row.GetProperty("create_time").GetString()!, CultureInfo.InvariantCulture).ToUnixTimeMilliseconds());

        using JsonDocument findings = Read(script, index, Path.Combine(fleet.CaptureDirectory("linux-rootkit"), "findings.parquet"));
        Assert.Equal(reports["linux-rootkit"].Findings.Select(f => (f.RuleId, f.Severity.ToString().ToLowerInvariant(), f.Pid)),
            findings.RootElement.GetProperty("data").EnumerateArray().Select(r => (r.GetProperty("rule_id").GetString()!, r.GetProperty("severity").GetString()!,
                r.GetProperty("pid").ValueKind == JsonValueKind.Null ? (long?)null : r.GetProperty("pid").GetInt64())));

        // A table with no rows still carries its schema (the clean Windows image was not scanned with YARA).
        using JsonDocument yara = Read(script, index, Path.Combine(fleet.CaptureDirectory("win-clean"), "yara.parquet"));
        Assert.Equal(0, yara.RootElement.GetProperty("rows").GetInt32());
        Assert.Equal(CaseParquet.Tables.Single(t => t.Name == "yara").Columns.Select(c => c.Name),
            yara.RootElement.GetProperty("columns").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
    }

    [Fact]
    public void Architecture_schema_table_and_athena_ddl_name_exactly_the_written_columns()
    {
        string architecture = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "docs", "ARCHITECTURE.md"));
        string athena = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "infra", "aws", "athena-fleet.sql"));
        foreach (ParquetTableInfo table in CaseParquet.Tables)
        {
            // docs: "| `table` | `column` | type | description |" rows, in file order.
            var documented = Regex.Matches(architecture, $@"^\| `{table.Name}` \| `([a-z0-9_]+)` \| ([a-z0-9]+) \|", RegexOptions.Multiline)
                .Select(m => (m.Groups[1].Value, m.Groups[2].Value)).ToList();
            Assert.Equal(table.Columns.Select(c => (c.Name, c.Type.ToString().ToLowerInvariant())), documented);

            Match ddl = Regex.Match(athena, $@"CREATE EXTERNAL TABLE IF NOT EXISTS cloudmem_fleet\.{table.Name} \((.*?)\n\)\nROW FORMAT SERDE 'org\.apache\.hadoop\.hive\.ql\.io\.parquet\.serde\.ParquetHiveSerDe'\n" +
                $@"STORED AS INPUTFORMAT 'org\.apache\.hadoop\.hive\.ql\.io\.SymlinkTextInputFormat'\n[^;]*LOCATION 's3://BUCKET/CASE/athena/{table.Name}/';", RegexOptions.Singleline);
            Assert.True(ddl.Success, $"athena-fleet.sql has no CREATE EXTERNAL TABLE for {table.Name}");
            var columns = Regex.Matches(ddl.Groups[1].Value, @"^\s*`([a-z0-9_]+)` ([a-z]+)", RegexOptions.Multiline).Select(m => (m.Groups[1].Value, m.Groups[2].Value));
            Assert.Equal(table.Columns.Select(c => (c.Name, Athena(c.Type))), columns);
        }
    }

    private static string Athena(ParquetColumnType type) => type switch
    {
        ParquetColumnType.String => "string",
        ParquetColumnType.Int64 => "bigint",
        ParquetColumnType.Double => "double",
        ParquetColumnType.Boolean => "boolean",
        _ => "timestamp",
    };

    private static long Count(FleetCase cases, string table, string id)
        => (long)cases.Scalar($"SELECT count(*) FROM {table} WHERE capture_id = $1", id)!;

    private static JsonDocument Read(string script, string index, string file)
    {
        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { script, new Uri(index).AbsoluteUri, file })
        {
            start.ArgumentList.Add(a);
        }
        using Process node = Process.Start(start)!;
        Task<string> stdout = node.StandardOutput.ReadToEndAsync();
        string stderr = node.StandardError.ReadToEnd();
        Assert.True(node.WaitForExit(60_000), "node did not finish");
        Assert.True(node.ExitCode == 0, stderr);
        return JsonDocument.Parse(stdout.Result);
    }
}
