using System.Globalization;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis;

/// <summary>What <c>fleet who-has</c> looks for.</summary>
public enum WhoHasKind
{
    /// <summary>A YARA rule name (exact, as YARA spells it) in the <c>yara</c> table.</summary>
    Yara,

    /// <summary>An endpoint <c>IP</c>, <c>IP:PORT</c>, <c>[IPv6]:PORT</c>, <c>:PORT</c> or <c>*:PORT</c>, local or remote, in <c>connections</c>.</summary>
    Connection,

    /// <summary>A process name (case-insensitive; <c>*</c> and <c>?</c> as wildcards) in <c>processes</c>.</summary>
    Process,

    /// <summary>A rule id (case-insensitive) in <c>findings</c>.</summary>
    Finding,
}

/// <summary>One capture that has what was asked for.</summary>
/// <param name="Capture">The capture id (its case directory's name).</param>
/// <param name="Matched">What matched there (rule and title, endpoint, process names, YARA rule).</param>
/// <param name="Count">How many rows matched in that capture.</param>
/// <param name="ExamplePid">The lowest pid among them, when they concern a process.</param>
/// <param name="ExampleProcess">That process's name.</param>
public sealed record WhoHasRow(string Capture, string Matched, long Count, long? ExamplePid, string? ExampleProcess);

/// <summary>The ready-made fleet questions: which captures have a YARA hit, an endpoint, a process or a finding, one row per
/// capture that has it (captures without it are not listed).</summary>
public static class FleetQuestions
{
    /// <summary>Answers "which captures have <paramref name="value"/>" over <paramref name="fleet"/>.</summary>
    /// <exception cref="FleetQueryException"><paramref name="value"/> cannot be read (a connection that is no endpoint).</exception>
    public static RowsReport<WhoHasRow> WhoHas(FleetCase fleet, WhoHasKind kind, string value)
    {
        ArgumentNullException.ThrowIfNull(fleet);
        ArgumentNullException.ThrowIfNull(value);
        const string Example = "count(*) AS count, min(pid) AS example_pid, arg_min(process, pid) AS example_process";
        (string sql, object[] parameters) = kind switch
        {
            WhoHasKind.Yara => ($"SELECT capture_id, any_value(rule) AS matched, {Example} FROM yara WHERE rule = $1 GROUP BY capture_id", [value]),
            WhoHasKind.Process => ($"SELECT capture_id, string_agg(DISTINCT name, ', ' ORDER BY name) AS matched, {Example.Replace("process, pid", "name, pid", StringComparison.Ordinal)} " +
                "FROM processes WHERE name ILIKE $1 ESCAPE '\\' GROUP BY capture_id", [Like(value)]),
            WhoHasKind.Finding => ($"SELECT capture_id, any_value(rule_id || ': ' || title) AS matched, {Example} FROM findings WHERE upper(rule_id) = upper($1) GROUP BY capture_id", [value]),
            _ => Connection(value, Example),
        };
        QueryReport result = fleet.Query(sql + " ORDER BY capture_id", "who-has", parameters);
        List<WhoHasRow> rows = [.. result.Rows.Select(r => new WhoHasRow((string)r[0]!, r[1] as string ?? value,
            System.Convert.ToInt64(r[2], CultureInfo.InvariantCulture), r[3] is null ? null : System.Convert.ToInt64(r[3], CultureInfo.InvariantCulture), r[4] as string))];
        var notes = new List<string>();
        if (kind == WhoHasKind.Yara && System.Convert.ToInt64(fleet.Scalar("SELECT count(*) FROM runs WHERE plugin LIKE '%.yarascan%'"), CultureInfo.InvariantCulture) == 0)
        {
            notes.Add("no capture of this case was analysed with --yara: the yara table is empty");
        }
        long captures = System.Convert.ToInt64(fleet.Scalar("SELECT count(DISTINCT capture_id) FROM captures"), CultureInfo.InvariantCulture);
        notes.Add($"{rows.Count} of {captures} captures");
        return new RowsReport<WhoHasRow>("who-has " + kind.ToString().ToLowerInvariant() + " " + value, rows, notes);
    }

    /// <summary>A process name with <c>*</c>/<c>?</c> wildcards as an ILIKE pattern (SQL's own % and _ taken literally).</summary>
    private static string Like(string name)
        => name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal)
            .Replace('*', '%').Replace('?', '_');

    private static (string Sql, object[] Parameters) Connection(string value, string example)
    {
        (string? address, long? port) = Endpoint(value);
        var where = new List<string>();
        var parameters = new List<object>();
        if (address is not null)
        {
            parameters.Add(address);
            where.Add($"(lower(local_address) = lower(${parameters.Count}) OR lower(remote_address) = lower(${parameters.Count}))");
        }
        if (port is not null)
        {
            parameters.Add(port.Value);
            where.Add($"(local_port = ${parameters.Count} OR remote_port = ${parameters.Count})");
        }
        const string Side = "CASE WHEN contains({0}_address, ':') THEN '[' || {0}_address || ']' ELSE {0}_address END || coalesce(':' || {0}_port, '')";
        string endpoint = $"protocol || ' ' || {string.Format(CultureInfo.InvariantCulture, Side, "local")} || coalesce(' -> ' || {string.Format(CultureInfo.InvariantCulture, Side, "remote")}, '')";
        return ($"SELECT capture_id, arg_min({endpoint}, coalesce(pid, 0)) AS matched, {example} FROM connections WHERE {string.Join(" AND ", where)} GROUP BY capture_id",
            [.. parameters]);
    }

    /// <summary><c>IP</c>, <c>IP:PORT</c>, <c>[IPv6]:PORT</c>, bare IPv6, <c>:PORT</c>, <c>*:PORT</c> → address (null for any) and port (null for any).</summary>
    internal static (string? Address, long? Port) Endpoint(string value)
    {
        string text = value.Trim();
        string? address = text;
        long? port = null;
        bool bracketed = text.StartsWith('[');
        int colon = bracketed ? text.IndexOf("]:", StringComparison.Ordinal) is int end and >= 0 ? end + 1 : -1 : text.LastIndexOf(':');
        if (colon >= 0 && (bracketed || text.IndexOf(':') == colon))
        {
            if (!long.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long p) || p > 65535)
            {
                throw new FleetQueryException($"--connection {value}: not IP, IP:PORT, [IPv6]:PORT, :PORT or *:PORT (the port must be 0 to 65535)");
            }
            port = p;
            address = text[..colon];
        }
        if (address.StartsWith('[') && address.EndsWith(']'))
        {
            address = address[1..^1];
        }
        address = address is "" or "*" ? null : address;
        if (address is null && port is null)
        {
            throw new FleetQueryException($"--connection {value}: give an address, a port, or both");
        }
        return (address, port);
    }
}
