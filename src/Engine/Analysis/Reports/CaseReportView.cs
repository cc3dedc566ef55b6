using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis.Reports;

/// <summary>How many rows the human reports show of each part (the case database keeps every row).</summary>
internal static class ReportCaps
{
    /// <summary>Rows shown of each plugin table.</summary>
    public const int PluginTableRows = 200;

    /// <summary>Evidence rows shown per finding.</summary>
    public const int EvidenceRows = 50;

    /// <summary>Detail lines (hexdump, disassembly) shown per evidence row.</summary>
    public const int DetailLines = 48;

    /// <summary>Timeline events shown.</summary>
    public const int TimelineEvents = 2000;

    /// <summary>Network endpoints shown.</summary>
    public const int Connections = 2000;

    /// <summary>Processes drawn in the tree.</summary>
    public const int Processes = 5000;

    /// <summary>Nesting levels drawn in the process tree; deeper processes are drawn at this level, marked.</summary>
    public const int TreeDepth = 64;

    /// <summary>Characters shown of one cell (a command line, an environment block).</summary>
    public const int CellChars = 2000;
}

/// <summary>One process placed in the tree: its nesting level and what the reports mark on it.</summary>
/// <param name="Process">The process.</param>
/// <param name="Depth">0 for roots.</param>
/// <param name="Worst">The most severe finding about it, or null.</param>
/// <param name="Clamped">It lies deeper than <see cref="ReportCaps.TreeDepth"/> and is drawn at that level.</param>
internal sealed record TreeNode(CaseProcess Process, int Depth, Severity? Worst, bool Clamped);

/// <summary>What both human reports derive from a <see cref="CaseReport"/>, in the order they print it. Never throws on
/// odd data (cycles in parent links, duplicate pids, unsorted input): the values come from attacker-controlled memory.</summary>
internal sealed class CaseReportView
{
    private static readonly ConcurrentDictionary<Type, RowColumn[]> s_columns = new();

    public CaseReportView(CaseReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        Report = report;
        Findings = [.. report.Findings.Select((f, i) => (f, i)).OrderByDescending(x => x.f.Severity).ThenBy(x => x.i).Select(x => x.f)];
        Timeline = [.. report.Timeline.Select((e, i) => (e, i)).OrderBy(x => x.e.Time).ThenBy(x => x.i).Select(x => x.e)];
        WorstByPid = report.Findings.Where(f => f.Pid is not null).GroupBy(f => f.Pid!.Value).ToDictionary(g => g.Key, g => g.Max(f => f.Severity));
        Tree = BuildTree(report.Processes, WorstByPid);
    }

    /// <summary>The severities, most severe first.</summary>
    public static IReadOnlyList<Severity> Severities { get; } = [.. Enum.GetValues<Severity>().Reverse()];

    public CaseReport Report { get; }

    /// <summary>Findings, most severe first (the model's order kept within a severity).</summary>
    public IReadOnlyList<Finding> Findings { get; }

    /// <summary>Timeline events, oldest first (stable).</summary>
    public IReadOnlyList<TimelineEvent> Timeline { get; }

    /// <summary>The most severe finding of each pid that has one.</summary>
    public IReadOnlyDictionary<long, Severity> WorstByPid { get; }

    /// <summary>The process tree in drawing order (a parent before its children), at most <see cref="ReportCaps.Processes"/>.</summary>
    public IReadOnlyList<TreeNode> Tree { get; }

    public int Count(Severity severity) => Findings.Count(f => f.Severity == severity);

    public int FailedRuns => Report.Runs.Count(r => r.Error is not null);

    /// <summary>The summary's facts about the capture and the run, in the order both reports list them.</summary>
    public IReadOnlyList<(string Name, string Value)> Facts()
    {
        CaseProvenance p = Report.Provenance;
        string failed = FailedRuns == 0 ? "none failed"
            : $"{FailedRuns.ToString(CultureInfo.InvariantCulture)} failed: {string.Join(", ", Report.Runs.Where(x => x.Error is not null).Select(x => x.Plugin))}";
        int hidden = Report.Processes.Count(x => x.Hidden);
        return
        [
            ("Image", p.ImagePath), ("Format", p.Format), ("Size", Bytes(p.Bytes)), ("SHA-256", p.Sha256 ?? "not computed"),
            ("OS", p.Os), ("Kernel", p.Kernel ?? "-"), ("Analysed at", Time(p.AnalysedAt)),
            ("Plugins", $"{Report.Runs.Count.ToString(CultureInfo.InvariantCulture)} run, {failed}"),
            ("Processes", Report.Processes.Count.ToString(CultureInfo.InvariantCulture) + (hidden > 0 ? $" ({hidden.ToString(CultureInfo.InvariantCulture)} hidden)" : "")),
            ("Network endpoints", Report.Connections.Count.ToString(CultureInfo.InvariantCulture)),
            ("Timeline events", Report.Timeline.Count.ToString(CultureInfo.InvariantCulture)),
        ];
    }

    /// <summary>"3 findings, 1 of them high or critical".</summary>
    public string FindingsHeadline()
    {
        int high = Count(Severity.Critical) + Count(Severity.High);
        return Findings.Count.ToString(CultureInfo.InvariantCulture) + (Findings.Count == 1 ? " finding" : " findings")
            + (high > 0 ? $", {high.ToString(CultureInfo.InvariantCulture)} of them high or critical" : ", none high or critical");
    }

    /// <summary>The anchor id of the finding at <paramref name="index"/> of <see cref="Findings"/>.</summary>
    public static string FindingId(int index) => "finding-" + (index + 1).ToString(CultureInfo.InvariantCulture);

    public static string SeverityName(Severity severity) => severity.ToString();

    public static string Confidence(double confidence)
        => double.IsFinite(confidence) ? Math.Round(Math.Clamp(confidence, 0, 1) * 100).ToString(CultureInfo.InvariantCulture) + "%" : "?";

    public static string Elapsed(TimeSpan elapsed) => elapsed.TotalSeconds >= 10
        ? elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s"
        : elapsed.TotalMilliseconds.ToString("0", CultureInfo.InvariantCulture) + " ms";

    public static string Time(DateTimeOffset? time) => RowColumn.Cell(time, hex: false);

    public static string Number(long? value) => value?.ToString(CultureInfo.InvariantCulture) ?? "-";

    /// <summary>Bytes as people read them (<c>512.0 MiB (536870912 bytes)</c>).</summary>
    public static string Bytes(long bytes) => bytes < 1024
        ? bytes.ToString(CultureInfo.InvariantCulture) + " bytes"
        : $"{Hex.Size((ulong)bytes)} ({bytes.ToString(CultureInfo.InvariantCulture)} bytes)";

    /// <summary>The columns of a row type (cached).</summary>
    public static RowColumn[] ColumnsOf(Type rowType) => s_columns.GetOrAdd(rowType, RowColumn.Of);

    /// <summary>The columns a table shows for rows of <paramref name="rowType"/>: a row with a detail block shows its list
    /// columns (hexdump, disassembly) as that block instead.</summary>
    public static IReadOnlyList<RowColumn> TableColumns(Type rowType, IReadOnlyList<RowColumn> columns)
        => typeof(IRowDetail).IsAssignableFrom(rowType)
            ? [.. columns.Where(c => c.Type == typeof(string) || !typeof(IEnumerable).IsAssignableFrom(c.Type))]
            : columns;

    /// <summary>The text of one cell, cut at <see cref="ReportCaps.CellChars"/> characters (saying so).</summary>
    public static string Cell(RowColumn column, object row)
    {
        string text;
        try
        {
            text = column.CellOf(row);
        }
        catch (Exception e) when (e is System.Reflection.TargetInvocationException or InvalidOperationException or ArgumentException)
        {
            text = "(unreadable: " + (e.InnerException ?? e).Message + ")";
        }
        return Clip(text);
    }

    public static string Clip(string text) => text.Length <= ReportCaps.CellChars
        ? text
        : string.Concat(text.AsSpan(0, ReportCaps.CellChars), $"… ({(text.Length - ReportCaps.CellChars).ToString(CultureInfo.InvariantCulture)} more characters)");

    /// <summary>The detail block (heading and lines) of a row that has one, lines capped.</summary>
    public static (string Title, IReadOnlyList<string> Lines, int Omitted)? Detail(object row)
    {
        if (row is not IRowDetail detail)
        {
            return null;
        }
        List<string> lines = [.. detail.DetailLines.Take(ReportCaps.DetailLines + 1)];
        int total = lines.Count > ReportCaps.DetailLines ? detail.DetailLines.Count() : lines.Count;
        return (detail.DetailTitle, [.. lines.Take(ReportCaps.DetailLines)], total - Math.Min(total, ReportCaps.DetailLines));
    }

    /// <summary>The sentence under a capped table.</summary>
    public static string Omitted(int omitted, string what) => omitted <= 0 ? "" :
        $"{omitted.ToString(CultureInfo.InvariantCulture)} more {what} not shown here; case.sqlite has them all.";

    /// <summary>
    /// Places processes under their parents (<see cref="Forest.DepthFirst"/>): roots are processes whose parent is absent
    /// (or themselves), processes only reachable through a parent cycle become roots too, so every process is drawn
    /// exactly once; a duplicate pid takes the first process of that pid as its parent.
    /// </summary>
    private static List<TreeNode> BuildTree(IReadOnlyList<CaseProcess> processes, IReadOnlyDictionary<long, Severity> worst)
    {
        List<CaseProcess> shown = [.. processes.Take(ReportCaps.Processes)];
        var byPid = new Dictionary<long, int>();
        for (int i = 0; i < shown.Count; i++)
        {
            byPid.TryAdd(shown[i].Pid, i);
        }
        return [.. Forest.DepthFirst(shown.Count, i => shown[i].Ppid != shown[i].Pid && byPid.TryGetValue(shown[i].Ppid, out int parent) ? parent : null)
            .Select(x => new TreeNode(shown[x.Index], Math.Min(x.Depth, ReportCaps.TreeDepth),
                worst.TryGetValue(shown[x.Index].Pid, out Severity s) ? s : null, x.Depth > ReportCaps.TreeDepth))];
    }

    /// <summary>Evidence rows in groups that share one table: consecutive rows of one plugin and row type, at most
    /// <see cref="ReportCaps.EvidenceRows"/> rows in all.</summary>
    public static IEnumerable<(string Plugin, IReadOnlyList<RowColumn> Columns, IReadOnlyList<Evidence> Rows)> EvidenceTables(IReadOnlyList<Evidence> evidence)
    {
        List<Evidence> shown = [.. evidence.Take(ReportCaps.EvidenceRows)];
        for (int i = 0; i < shown.Count;)
        {
            Evidence first = shown[i];
            Type type = first.Row.GetType();
            int end = i + 1;
            while (end < shown.Count && shown[end].Plugin == first.Plugin && shown[end].Row.GetType() == type)
            {
                end++;
            }
            yield return (first.Plugin, TableColumns(type, ColumnsOf(type)), shown.GetRange(i, end - i));
            i = end;
        }
    }
}
