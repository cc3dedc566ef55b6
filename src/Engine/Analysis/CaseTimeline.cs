using System.Globalization;
using System.Text;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// The timeline of a case: one event per time value (a <see cref="DateTimeOffset"/> column) of every plugin's rows,
/// oldest first, and its export as a body file that <c>mactime -b</c> (The Sleuth Kit) and plaso read.
/// </summary>
public static class CaseTimeline
{
    /// <summary>Tables that repeat another table's times (the tree repeats pslist, netstat repeats netscan).</summary>
    private static readonly HashSet<string> s_derived = new(StringComparer.Ordinal) { "windows.pstree", "windows.netstat" };

    private static readonly Dictionary<string, string> s_kinds = new(StringComparer.Ordinal)
    {
        ["windows.pslist.CreateTime"] = "process start",
        ["windows.psscan.CreateTime"] = "process start",
        ["windows.threads.CreateTime"] = "thread start",
        ["windows.threads.ExitTime"] = "thread exit",
        ["windows.netscan.Created"] = "socket created",
        ["windows.netstat.Created"] = "socket created",
        ["windows.dlllist.LoadTime"] = "module load",
        ["windows.registry.userassist.LastWriteTime"] = "registry last write",
        ["windows.registry.userassist.LastUpdated"] = "program run",
        ["windows.registry.printkey.LastWriteTime"] = "registry last write",
        ["linux.bash.Time"] = "shell command",
    };

    private static readonly string[] s_describe =
        ["ImageFileName", "Process", "Comm", "Owner", "Name", "Path", "Command", "Key", "LocalAddr", "LocalPort", "ForeignAddr", "ForeignPort"];

    /// <summary>Every timestamped row of <paramref name="tables"/> as an event, oldest first; Linux times since boot
    /// (process starts, dmesg) placed from <paramref name="linuxBoot"/>, or left out with a line in <paramref name="notes"/>
    /// when it is not known.</summary>
    public static IReadOnlyList<TimelineEvent> Build(IReadOnlyList<IRowsReport> tables, List<string> notes, DateTimeOffset? linuxBoot = null)
    {
        ArgumentNullException.ThrowIfNull(tables);
        ArgumentNullException.ThrowIfNull(notes);
        var events = new List<TimelineEvent>();
        var seen = new HashSet<(DateTimeOffset, string, string)>();
        foreach (IRowsReport table in tables.Where(t => !s_derived.Contains(t.Title)))
        {
            RowColumn[] times = [.. table.Columns.Where(c => (Nullable.GetUnderlyingType(c.Type) ?? c.Type) == typeof(DateTimeOffset))];
            if (times.Length == 0)
            {
                continue;
            }
            foreach (object row in table.BoxedRows)
            {
                foreach (RowColumn column in times)
                {
                    if (column.ValueOf(row) is not DateTimeOffset time)
                    {
                        continue;
                    }
                    string kind = s_kinds.GetValueOrDefault($"{table.Title}.{column.Name}") ?? column.Name;
                    (string description, long? pid) = Describe(table, row);
                    if (seen.Add((time, kind, description)))
                    {
                        events.Add(new TimelineEvent(time.ToUniversalTime(), table.Title, kind, description, pid));
                    }
                }
            }
        }
        if (linuxBoot is { } boot)
        {
            foreach (LinuxProcess p in (tables.FirstOrDefault(t => t.Title == "linux.pslist") as RowsReport<LinuxProcess>)?.Rows ?? [])
            {
                if (SinceBoot(boot, p.StartSeconds) is { } start)
                {
                    events.Add(new TimelineEvent(start, "linux.pslist", "process start", $"{p.Comm} pid {p.Pid.ToString(CultureInfo.InvariantCulture)}", p.Pid));
                }
            }
            foreach (LinuxDmesgRecord r in (tables.FirstOrDefault(t => t.Title == "linux.dmesg") as RowsReport<LinuxDmesgRecord>)?.Rows ?? [])
            {
                string text = r.Text.Length > 200 ? r.Text[..200] + "..." : r.Text;
                events.Add(new TimelineEvent(SinceBoot(boot, r.TimestampSeconds)!.Value, "linux.dmesg", "kernel log", text, null));
            }
        }
        else if (tables.Any(t => t.Title == "linux.dmesg" && t.BoxedRows.Count > 0))
        {
            notes.Add("timeline: linux.dmesg times are seconds since boot and the boot time is not known from this capture; the kernel log is left out of the timeline");
        }
        if (linuxBoot is null && tables.Any(t => t.Title == "linux.pslist" && t.BoxedRows.Count > 0))
        {
            notes.Add("timeline: linux.pslist start times are seconds since boot and the boot time is not known from this capture; process starts are left out of the timeline");
        }
        return [.. events.OrderBy(e => e.Time).ThenBy(e => e.Source, StringComparer.Ordinal).ThenBy(e => e.Description, StringComparer.Ordinal)];
    }

    /// <summary><paramref name="boot"/> plus <paramref name="seconds"/> since boot, when both are known.</summary>
    internal static DateTimeOffset? SinceBoot(DateTimeOffset? boot, double? seconds)
        => boot is { } b && seconds is { } s && double.IsFinite(s) && s >= 0 && s < 100 * 365.25 * 86400 ? b.AddTicks((long)(s * TimeSpan.TicksPerSecond)) : null;

    private static (string Description, long? Pid) Describe(IRowsReport table, object row)
    {
        var parts = new List<string>();
        long? pid = null;
        foreach (RowColumn column in table.Columns)
        {
            object? value = column.ValueOf(row);
            if (column.Name == "Pid" && value is int or long)
            {
                pid = System.Convert.ToInt64(value, CultureInfo.InvariantCulture);
            }
        }
        foreach (string name in s_describe)
        {
            if (table.Columns.FirstOrDefault(c => c.Name == name) is { } column && column.ValueOf(row) is { } value && value is not "")
            {
                parts.Add(column.CellOf(row));
            }
        }
        if (pid is not null)
        {
            parts.Add("pid " + pid.Value.ToString(CultureInfo.InvariantCulture));
        }
        if (table.Columns.FirstOrDefault(c => c.Name == "Tid") is { } tid && tid.ValueOf(row) is not null)
        {
            parts.Add("tid " + tid.CellOf(row));
        }
        return (string.Join(' ', parts), pid);
    }

    /// <summary>
    /// <paramref name="events"/> as a body file (The Sleuth Kit 3.0+ layout, one line per event:
    /// <c>MD5|name|inode|mode_as_string|UID|GID|size|atime|mtime|ctime|crtime</c>, times in whole Unix seconds). An event
    /// has one time, so it fills all four time fields and <c>mactime</c> prints it once (<c>macb</c>); the name is
    /// <c>source: kind: description</c> with <c>|</c> and <c>%</c> written as <c>%7C</c> and <c>%25</c>, which
    /// <c>mactime</c> decodes.
    /// </summary>
    public static void WriteBody(IReadOnlyList<TimelineEvent> events, TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(writer);
        foreach (TimelineEvent e in events)
        {
            string t = e.Time.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
            string name = Escape($"{e.Source}: {e.Kind}: {e.Description}");
            writer.Write($"0|{name}|0|0|0|0|0|{t}|{t}|{t}|{t}\n");
        }
    }

    private static string Escape(string text)
    {
        var b = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            b.Append(c switch
            {
                '%' => "%25",
                '|' => "%7C",
                '\n' => "%0A",
                '\r' => "%0D",
                _ => c.ToString(),
            });
        }
        return b.ToString();
    }
}
