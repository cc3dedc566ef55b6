using System.Globalization;
using CloudMem.Engine.Plugins;
using Parquet;
using Parquet.Schema;

namespace CloudMem.Engine.Analysis;

/// <summary>The type of a column of the case Parquet files (and what Athena/DuckDB read it as).</summary>
public enum ParquetColumnType
{
    /// <summary>UTF-8 text (Parquet BYTE_ARRAY/STRING; Athena <c>string</c>, DuckDB VARCHAR).</summary>
    String,

    /// <summary>64-bit signed integer (Parquet INT64; Athena <c>bigint</c>).</summary>
    Int64,

    /// <summary>64-bit float (Parquet DOUBLE; Athena <c>double</c>).</summary>
    Double,

    /// <summary>Flag (Parquet BOOLEAN; Athena <c>boolean</c>).</summary>
    Boolean,

    /// <summary>UTC instant, milliseconds (Parquet INT64 TIMESTAMP(MILLIS, isAdjustedToUTC); Athena <c>timestamp</c>,
    /// DuckDB TIMESTAMP WITH TIME ZONE).</summary>
    Timestamp,
}

/// <summary>One column of a case Parquet file.</summary>
/// <param name="Name">The column name (snake_case, stable).</param>
/// <param name="Type">Its type.</param>
/// <param name="Description">What it holds.</param>
public sealed record ParquetColumnInfo(string Name, ParquetColumnType Type, string Description);

/// <summary>One case Parquet file: <c>NAME.parquet</c> with these columns (every column nullable).</summary>
/// <param name="Name">The table name (the file is <c>NAME.parquet</c>; <c>fleet query</c> names its view so).</param>
/// <param name="Columns">The columns, in file order.</param>
public sealed record ParquetTableInfo(string Name, IReadOnlyList<ParquetColumnInfo> Columns)
{
    /// <summary>The file name in a case directory.</summary>
    public string FileName => Name + ".parquet";
}

/// <summary>
/// Writes the columnar side of a case directory: <c>captures.parquet</c> (one row), <c>findings</c>, <c>processes</c>,
/// <c>connections</c>, <c>yara</c> and <c>runs</c>, each with a <c>capture_id</c> column holding the case directory's
/// name, so the files of many cases (<c>CASE/captures/ID/*.parquet</c>) read as one table per name in DuckDB, Athena or
/// Synapse. The schema (<see cref="Tables"/>) is fixed: a table with no rows is still written with its columns. Files are
/// created new (never overwritten). Not thread-safe per directory; different directories may be written concurrently.
/// </summary>
public static class CaseParquet
{
    private static readonly ParquetOptions s_options = new() { CompressionMethod = CompressionMethod.Snappy };

    /// <summary>The files and their columns, in the order written.</summary>
    public static IReadOnlyList<ParquetTableInfo> Tables => [Captures.Info, Findings.Info, Processes.Info, Connections.Info, Yara.Info, Runs.Info];

    /// <summary>Writes the six files into <paramref name="directory"/>; the capture id is its name. Returns their paths.</summary>
    /// <exception cref="IOException">A file already exists or cannot be written.</exception>
    public static IReadOnlyList<string> Write(CaseReport report, string directory)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(directory);
        string id = CaptureId(directory);
        return
        [
            Captures.Write(directory, [report], id),
            Findings.Write(directory, report.Findings, id),
            Processes.Write(directory, report.Processes, id),
            Connections.Write(directory, [.. report.Connections.Select(Endpoints.Of)], id),
            Yara.Write(directory, YaraHits(report.Tables), id),
            Runs.Write(directory, report.Runs, id),
        ];
    }

    /// <summary>The capture id of a case directory: its name (trailing separators ignored).</summary>
    public static string CaptureId(string directory)
        => Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)));

    private static readonly Table<CaseReport> Captures = new("captures",
    [
        new("image_path", ParquetColumnType.String, "The capture file analysed", r => r.Provenance.ImagePath),
        new("format", ParquetColumnType.String, "Capture format (raw, lime, kdump, crashdump...)", r => r.Provenance.Format),
        new("bytes", ParquetColumnType.Int64, "Physical bytes captured", r => r.Provenance.Bytes),
        new("sha256", ParquetColumnType.String, "SHA-256 of the capture file (lowercase hex), when computed", r => r.Provenance.Sha256),
        new("os", ParquetColumnType.String, "Linux or Windows", r => r.Provenance.Os),
        new("kernel", ParquetColumnType.String, "Kernel banner or build", r => r.Provenance.Kernel),
        new("analysed_at", ParquetColumnType.Timestamp, "When the analysis ran", r => r.Provenance.AnalysedAt),
        new("custody_case", ParquetColumnType.String, "The custody manifest's case id, when analysed from one", r => Custody(r, "case")),
        new("custody_target", ParquetColumnType.String, "The custody manifest's target (instance/VM id), when analysed from one", r => Custody(r, "target")),
        new("findings_total", ParquetColumnType.Int64, "Number of findings", r => r.Findings.Count),
        new("findings_critical", ParquetColumnType.Int64, "Findings of severity critical", r => Count(r, Severity.Critical)),
        new("findings_high", ParquetColumnType.Int64, "Findings of severity high", r => Count(r, Severity.High)),
        new("findings_medium", ParquetColumnType.Int64, "Findings of severity medium", r => Count(r, Severity.Medium)),
        new("findings_low", ParquetColumnType.Int64, "Findings of severity low", r => Count(r, Severity.Low)),
        new("findings_info", ParquetColumnType.Int64, "Findings of severity info", r => Count(r, Severity.Info)),
        new("plugins_run", ParquetColumnType.Int64, "Plugins run", r => r.Runs.Count),
        new("plugins_failed", ParquetColumnType.Int64, "Plugins that failed (runs.error not null)", r => r.Runs.Count(x => x.Error is not null)),
    ]);

    private static readonly Table<Finding> Findings = new("findings",
    [
        new("rule_id", ParquetColumnType.String, "The rule's id (CM-LNX-004, CM-WIN-009...)", f => f.RuleId),
        new("severity", ParquetColumnType.String, "critical, high, medium, low or info", f => f.Severity.ToString().ToLowerInvariant()),
        new("severity_rank", ParquetColumnType.Int64, "0 info, 1 low, 2 medium, 3 high, 4 critical (ORDER BY severity_rank DESC)", f => (long)f.Severity),
        new("title", ParquetColumnType.String, "The rule's title", f => f.Title),
        new("attack_technique", ParquetColumnType.String, "MITRE ATT&CK technique id (T1055, T1055.012; - for YARA hits)", f => f.Technique),
        new("confidence", ParquetColumnType.Double, "How sure the rule is, 0 to 1", f => f.Confidence),
        new("summary", ParquetColumnType.String, "One sentence naming the process/module/address", f => f.Summary),
        new("pid", ParquetColumnType.Int64, "The process it concerns, when it concerns one", f => f.Pid),
        new("process", ParquetColumnType.String, "That process's name, when known", f => f.ProcessName),
        new("evidence_count", ParquetColumnType.Int64, "Rows that prove it", f => f.Evidence.Count),
        new("evidence_plugins", ParquetColumnType.String, "The plugins those rows come from, comma-separated", f => string.Join(',', f.Evidence.Select(e => e.Plugin).Distinct())),
        new("evidence_keys", ParquetColumnType.String, "'plugin row_key' of the first 20 rows, one per line (row_key finds the row in case.sqlite)",
            f => string.Join('\n', f.Evidence.Take(20).Select(e => e.Plugin + " " + e.RowKey))),
    ]);

    private static readonly Table<CaseProcess> Processes = new("processes",
    [
        new("pid", ParquetColumnType.Int64, "Process id", p => p.Pid),
        new("ppid", ParquetColumnType.Int64, "Parent process id", p => p.Ppid),
        new("name", ParquetColumnType.String, "Image or command name (Linux comm, Windows ImageFileName)", p => p.Name),
        new("command_line", ParquetColumnType.String, "Full command line, when read", p => p.CommandLine),
        new("create_time", ParquetColumnType.Timestamp, "Start time, when known (Linux: placed from the boot time)", p => p.Start),
        new("hidden", ParquetColumnType.Boolean, "Not on the kernel's process list (found by a scan only)", p => p.Hidden),
    ]);

    private static readonly Table<Endpoints> Connections = new("connections",
    [
        new("protocol", ParquetColumnType.String, "TCP, TCPv6, UDP, UDPv6, UNIX...", c => c.Connection.Protocol),
        new("local_address", ParquetColumnType.String, "Local address (IPv6 without brackets; * for any; the path for UNIX sockets)", c => c.LocalAddress),
        new("local_port", ParquetColumnType.Int64, "Local port (null for UNIX sockets)", c => c.LocalPort),
        new("remote_address", ParquetColumnType.String, "Remote address, when connected", c => c.RemoteAddress),
        new("remote_port", ParquetColumnType.Int64, "Remote port, when connected", c => c.RemotePort),
        new("state", ParquetColumnType.String, "TCP state (LISTEN, ESTABLISHED, LISTENING...), when it has one", c => c.Connection.State),
        new("pid", ParquetColumnType.Int64, "Owner process id, when known", c => c.Connection.Pid),
        new("process", ParquetColumnType.String, "Owner process name, when known", c => c.Connection.Process),
    ]);

    private static readonly Table<YaraHit> Yara = new("yara",
    [
        new("plugin", ParquetColumnType.String, "linux.yarascan, windows.yarascan (process memory) or *.yarascan.physical", h => h.Plugin),
        new("rule", ParquetColumnType.String, "The YARA rule that matched", h => h.Rule),
        new("string_id", ParquetColumnType.String, "The rule's string that matched ($a...)", h => h.String),
        new("pid", ParquetColumnType.Int64, "The process whose memory matched (null for physical scans)", h => h.Pid),
        new("process", ParquetColumnType.String, "That process's name", h => h.Process),
        new("virtual_address", ParquetColumnType.Int64, "Virtual address of the match (user space; null for physical scans)", h => h.VirtualAddress),
        new("physical_address", ParquetColumnType.Int64, "Physical address of the match, when mapped", h => h.PhysicalAddress),
        new("length", ParquetColumnType.Int64, "Length of the match", h => h.Length),
        new("region", ParquetColumnType.String, "Linux: the mapping ([heap], a file); Windows: the VAD start as 0x...", h => h.Region),
        new("preview", ParquetColumnType.String, "The match's first bytes as printable ASCII", h => h.Preview),
    ]);

    private static readonly Table<PluginRun> Runs = new("runs",
    [
        new("plugin", ParquetColumnType.String, "The plugin name", r => r.Plugin),
        new("rows", ParquetColumnType.Int64, "Rows it returned (0 when it failed)", r => r.Rows),
        new("seconds", ParquetColumnType.Double, "Wall time of the run", r => r.Elapsed.TotalSeconds),
        new("error", ParquetColumnType.String, "The one-line error when it failed; null when it ran", r => r.Error),
        new("notes", ParquetColumnType.String, "The plugin's notes, one per line; null when none", r => r.Notes.Count == 0 ? null : string.Join('\n', r.Notes)),
    ]);

    private static string? Custody(CaseReport report, string name)
        => report.Provenance.Custody?.FirstOrDefault(kv => kv.Key == name) is { Key: not null } fact && fact.Value != "-" ? fact.Value : null;

    private static long Count(CaseReport report, Severity severity) => report.Findings.Count(f => f.Severity == severity);

    /// <summary>A connection with its endpoints split into address and port.</summary>
    private sealed record Endpoints(CaseConnection Connection, string? LocalAddress, long? LocalPort, string? RemoteAddress, long? RemotePort)
    {
        public static Endpoints Of(CaseConnection c)
        {
            (string? localAddress, long? localPort) = c.Protocol == "UNIX" ? (c.Local, null) : Split(c.Local);
            (string? remoteAddress, long? remotePort) = Split(c.Remote);
            return new Endpoints(c, localAddress, localPort, remoteAddress, remotePort);
        }

        /// <summary><c>10.0.0.5:443</c>, <c>[::1]:22</c>, <c>*:53</c> → address and port; a text without a port stays the address.</summary>
        internal static (string? Address, long? Port) Split(string? endpoint)
        {
            if (endpoint is null)
            {
                return (null, null);
            }
            int colon = endpoint.LastIndexOf(':');
            if (colon < 0 || !long.TryParse(endpoint.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long port))
            {
                return (endpoint, null);
            }
            string address = endpoint[..colon];
            return (address.StartsWith('[') && address.EndsWith(']') ? address[1..^1] : address, port);
        }
    }

    /// <summary>One YARA match of any of the YARA plugins, read from the row by column name.</summary>
    private sealed record YaraHit(string Plugin, string? Rule, string? String, long? Pid, string? Process, long? VirtualAddress,
        long? PhysicalAddress, long? Length, string? Region, string? Preview);

    private static List<YaraHit> YaraHits(IReadOnlyList<IRowsReport> tables)
    {
        var hits = new List<YaraHit>();
        foreach (IRowsReport table in tables.Where(t => t.Title.Contains(".yarascan", StringComparison.Ordinal)))
        {
            Dictionary<string, RowColumn> columns = table.Columns.ToDictionary(c => c.Name, StringComparer.Ordinal);
            object? Value(object row, string name) => columns.TryGetValue(name, out RowColumn? c) ? c.ValueOf(row) : null;
            foreach (object row in table.BoxedRows)
            {
                object? vadStart = Value(row, "VadStart");
                hits.Add(new YaraHit(table.Title, Value(row, "Rule") as string, Value(row, "String") as string, Int64(Value(row, "Pid")),
                    (Value(row, "Comm") ?? Value(row, "Process")) as string, Int64(Value(row, "VirtualAddress")), Int64(Value(row, "PhysicalAddress")),
                    Int64(Value(row, "Length")), Value(row, "Mapping") as string ?? (vadStart is null ? null : Output.HexAttribute.Format(vadStart)),
                    Value(row, "Preview") as string));
            }
        }
        return hits;
    }

    /// <summary>An integer column value as int64 (an address ≥ 2^63 as its two's complement, as case.sqlite stores it).</summary>
    private static long? Int64(object? value) => value switch
    {
        null => null,
        ulong u => unchecked((long)u),
        _ => System.Convert.ToInt64(value, CultureInfo.InvariantCulture),
    };

    /// <summary>One column: name, type, description and how to get the value from a row.</summary>
    private sealed record Column<TRow>(string Name, ParquetColumnType Type, string Description, Func<TRow, object?> Get);

    /// <summary>One file: its columns after <c>capture_id</c>, and the writer.</summary>
    private sealed class Table<TRow>
    {
        private readonly Column<TRow>[] _columns;

        public Table(string name, Column<TRow>[] columns)
        {
            _columns = columns;
            Info = new ParquetTableInfo(name, [new ParquetColumnInfo("capture_id", ParquetColumnType.String, "The capture: its case directory's name"),
                .. columns.Select(c => new ParquetColumnInfo(c.Name, c.Type, c.Description))]);
        }

        public ParquetTableInfo Info { get; }

        public string Write(string directory, IReadOnlyList<TRow> rows, string captureId)
        {
            string path = Path.Combine(directory, Info.FileName);
            DataField[] fields = [.. Info.Columns.Select(Field)];
            using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            WriteAsync(stream, fields, rows, captureId).GetAwaiter().GetResult();
            return path;
        }

        private async Task WriteAsync(Stream stream, DataField[] fields, IReadOnlyList<TRow> rows, string captureId)
        {
            await using ParquetWriter writer = await ParquetWriter.CreateAsync(new ParquetSchema(fields), stream, s_options).ConfigureAwait(false);
            using ParquetRowGroupWriter group = writer.CreateRowGroup();
            await group.WriteAsync(fields[0], rows.Select(_ => captureId).ToArray()).ConfigureAwait(false);
            for (int i = 0; i < _columns.Length; i++)
            {
                Column<TRow> column = _columns[i];
                DataField field = fields[i + 1];
                object?[] values = [.. rows.Select(column.Get)];
                Task written = column.Type switch
                {
                    ParquetColumnType.String => group.WriteAsync(field, values.Select(v => (string)v!).ToArray()),
                    ParquetColumnType.Int64 => group.WriteAsync<long>(field, values.Select(v => v is null ? (long?)null : System.Convert.ToInt64(v, CultureInfo.InvariantCulture)).ToArray()),
                    ParquetColumnType.Double => group.WriteAsync<double>(field, values.Select(v => (double?)v).ToArray()),
                    ParquetColumnType.Boolean => group.WriteAsync<bool>(field, values.Select(v => (bool?)v).ToArray()),
                    _ => group.WriteAsync<DateTime>(field, values.Select(v => ((DateTimeOffset?)v)?.UtcDateTime).ToArray()),
                };
                await written.ConfigureAwait(false);
            }
        }

        private static DataField Field(ParquetColumnInfo column) => column.Type switch
        {
            ParquetColumnType.String => new DataField(column.Name, typeof(string), true),
            ParquetColumnType.Int64 => new DataField<long?>(column.Name),
            ParquetColumnType.Double => new DataField<double?>(column.Name),
            ParquetColumnType.Boolean => new DataField<bool?>(column.Name),
            _ => new DateTimeDataField(column.Name, DateTimeFormat.Timestamp, isAdjustedToUTC: true, unit: DateTimeTimeUnit.Millis, isNullable: true),
        };
    }
}
