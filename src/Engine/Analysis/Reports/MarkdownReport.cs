using System.Globalization;
using System.Text;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis.Reports;

/// <summary>
/// The case report as GitHub-flavoured Markdown, for pasting into a ticket: the same parts in the same order as
/// <see cref="HtmlReport"/> (summary, findings by severity with evidence tables, process tree as a nested list, network,
/// timeline, plugin runs, plugin tables in collapsed <c>details</c> blocks). Values are escaped so that no value can end
/// a table cell or row (<c>|</c> and line breaks), start markup, or carry HTML; large parts are capped as in the HTML
/// report.
/// </summary>
public static class MarkdownReport
{
    /// <summary>Writes the report of <paramref name="report"/> to <paramref name="writer"/>. Does not close the writer.</summary>
    public static void Write(CaseReport report, TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(writer);
        var view = new CaseReportView(report);
        CaseProvenance p = report.Provenance;
        writer.Write("# CloudMem case report: " + Text(Path.GetFileName(p.ImagePath)) + "\n\n");
        Summary(writer, view);
        Findings(writer, view);
        Processes(writer, view);

        writer.Write("## Network\n\n");
        Table(writer, ["pid", "process", "protocol", "local", "remote", "state"],
            report.Connections.Take(ReportCaps.Connections).Select(c => new[] { CaseReportView.Number(c.Pid), c.Process ?? "-", c.Protocol, c.Local, c.Remote ?? "-", c.State ?? "-" }),
            "No network endpoint was found.");
        Omitted(writer, report.Connections.Count - ReportCaps.Connections, "endpoints");

        writer.Write("## Timeline\n\nOldest first, UTC.\n\n");
        Table(writer, ["time", "source", "kind", "pid", "description"],
            view.Timeline.Take(ReportCaps.TimelineEvents).Select(e => new[] { CaseReportView.Time(e.Time), e.Source, e.Kind, CaseReportView.Number(e.Pid), CaseReportView.Clip(e.Description) }),
            "No timestamped event was found.");
        Omitted(writer, view.Timeline.Count - ReportCaps.TimelineEvents, "events (the newest)");

        writer.Write("## Plugin runs\n\n");
        Table(writer, ["plugin", "time", "rows", "result", "notes"],
            report.Runs.Select(r => new[] { r.Plugin, CaseReportView.Elapsed(r.Elapsed), r.Rows.ToString(CultureInfo.InvariantCulture),
                r.Error is null ? "ok" : "**failed**: " + Text(r.Error), CaseReportView.Clip(string.Join('\n', r.Notes)) }),
            "No plugin ran.", preEscaped: 3);

        writer.Write("## Plugin tables\n\n");
        foreach (IRowsReport table in report.Tables)
        {
            IReadOnlyList<object> rows = table.BoxedRows;
            IReadOnlyList<RowColumn> columns = CaseReportView.TableColumns(table.RowType, table.Columns);
            writer.Write("<details><summary>" + Html(table.Title) + ": " + rows.Count.ToString(CultureInfo.InvariantCulture) + " rows</summary>\n\n");
            Table(writer, [.. columns.Select(c => c.Name)],
                rows.Take(ReportCaps.PluginTableRows).Select(r => columns.Select(c => CaseReportView.Cell(c, r)).ToArray()), "No rows.");
            Omitted(writer, rows.Count - ReportCaps.PluginTableRows, "rows");
            foreach (string note in table.Notes)
            {
                writer.Write("Note: " + Text(note) + "\n\n");
            }
            writer.Write("</details>\n\n");
        }
        writer.Write("Written by CloudMem at " + Text(CaseReportView.Time(p.AnalysedAt)) + "; case.sqlite holds every row.\n");
    }

    private static void Summary(TextWriter w, CaseReportView view)
    {
        CaseReport r = view.Report;
        CaseProvenance p = r.Provenance;
        w.Write("## Summary\n\n**" + Text(view.FindingsHeadline()) + "**.\n\n");
        Table(w, [.. CaseReportView.Severities.Select(CaseReportView.SeverityName)],
            [[.. CaseReportView.Severities.Select(s => view.Count(s).ToString(CultureInfo.InvariantCulture))]], "");
        Table(w, ["fact", "value"], view.Facts().Select(f => new[] { f.Name, f.Value }), "");
        if (p.Custody is { Count: > 0 } custody)
        {
            w.Write("### Custody\n\n");
            Table(w, ["fact", "value"], custody.Select(kv => new[] { kv.Key, kv.Value }), "");
        }
    }

    private static void Findings(TextWriter w, CaseReportView view)
    {
        w.Write("## Findings\n\n");
        if (view.Findings.Count == 0)
        {
            w.Write("No rule matched.\n\n");
        }
        int index = 0;
        foreach (IGrouping<Severity, Finding> group in view.Findings.GroupBy(f => f.Severity))
        {
            w.Write($"### {CaseReportView.SeverityName(group.Key)} ({group.Count().ToString(CultureInfo.InvariantCulture)})\n\n");
            foreach (Finding f in group)
            {
                w.Write($"#### {(++index).ToString(CultureInfo.InvariantCulture)}. {Text(f.Title)}\n\n");
                string process = f.Pid is null && f.ProcessName is null ? "" : $" · process {CaseReportView.Number(f.Pid)} {Text(f.ProcessName ?? "")}".TrimEnd();
                w.Write($"{Text(f.RuleId)} · ATT&amp;CK {Text(f.Technique)} · confidence {CaseReportView.Confidence(f.Confidence)}{process}\n\n");
                w.Write(Paragraph(f.Summary) + "\n\n");
                Evidence(w, f.Evidence);
            }
        }
    }

    private static void Evidence(TextWriter w, IReadOnlyList<Evidence> evidence)
    {
        foreach ((string plugin, IReadOnlyList<RowColumn> columns, IReadOnlyList<Evidence> rows) in CaseReportView.EvidenceTables(evidence))
        {
            w.Write($"Evidence from {Text(plugin)}:\n\n");
            Table(w, ["row key", .. columns.Select(c => c.Name)],
                rows.Select(e => (string[])[e.RowKey, .. columns.Select(c => CaseReportView.Cell(c, e.Row))]), "");
            foreach (Evidence e in rows)
            {
                if (CaseReportView.Detail(e.Row) is { } detail)
                {
                    List<string> lines = [.. detail.Lines];
                    if (detail.Omitted > 0)
                    {
                        lines.Add($"… {detail.Omitted.ToString(CultureInfo.InvariantCulture)} more lines");
                    }
                    w.Write("<details><summary>" + Html(detail.Title) + "</summary>\n\n");
                    Fenced(w, lines);
                    w.Write("</details>\n\n");
                }
            }
        }
        Omitted(w, evidence.Count - ReportCaps.EvidenceRows, "evidence rows");
    }

    private static void Processes(TextWriter w, CaseReportView view)
    {
        w.Write("## Processes\n\n");
        if (view.Tree.Count == 0)
        {
            w.Write("No process was found.\n\n");
        }
        foreach (TreeNode node in view.Tree)
        {
            CaseProcess p = node.Process;
            var line = new StringBuilder();
            line.Append(' ', node.Depth * 2).Append("- ").Append(p.Pid.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(Text(p.Name));
            if (p.Hidden)
            {
                line.Append(" **HIDDEN**");
            }
            if (node.Worst is { } worst)
            {
                line.Append(" **").Append(CaseReportView.SeverityName(worst).ToUpperInvariant()).Append("**");
            }
            if (node.Clamped)
            {
                line.Append(" (deeper)");
            }
            if (p.CommandLine is { Length: > 0 } cmd)
            {
                line.Append(" — ").Append(Text(CaseReportView.Clip(cmd)));
            }
            w.Write(line.Append('\n').ToString());
        }
        w.Write("\n");
        Omitted(w, view.Report.Processes.Count - view.Tree.Count, "processes");
    }

    /// <summary>A GFM table; each cell escaped, except the column at index <paramref name="preEscaped"/> (already Markdown).</summary>
    private static void Table(TextWriter w, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, string empty, int preEscaped = -1)
    {
        List<IReadOnlyList<string>> list = [.. rows];
        if (list.Count == 0 && empty.Length > 0)
        {
            w.Write(empty + "\n\n");
            return;
        }
        var sb = new StringBuilder();
        sb.Append('|');
        foreach (string h in header)
        {
            sb.Append(' ').Append(Cell(h)).Append(" |");
        }
        sb.Append("\n|");
        sb.Insert(sb.Length, " --- |", header.Count);
        sb.Append('\n');
        foreach (IReadOnlyList<string> row in list)
        {
            sb.Append('|');
            for (int c = 0; c < header.Count; c++)
            {
                string value = c < row.Count ? row[c] : "";
                sb.Append(' ').Append(c == preEscaped ? value : Cell(value)).Append(" |");
            }
            sb.Append('\n');
        }
        w.Write(sb.Append('\n').ToString());
    }

    private static void Fenced(TextWriter w, IReadOnlyList<string> lines)
    {
        int longest = 0;
        foreach (string line in lines)
        {
            int run = 0;
            foreach (char c in line)
            {
                run = c == '`' ? run + 1 : 0;
                longest = Math.Max(longest, run);
            }
        }
        string fence = new('`', Math.Max(3, longest + 1));
        w.Write(fence + "\n");
        foreach (string line in lines)
        {
            w.Write(Controls(line.Replace("\r", "", StringComparison.Ordinal)) + "\n");
        }
        w.Write(fence + "\n\n");
    }

    private static void Omitted(TextWriter w, int omitted, string what)
    {
        if (omitted > 0)
        {
            w.Write("_" + CaseReportView.Omitted(omitted, what) + "_\n\n");
        }
    }

    /// <summary>A table cell (<see cref="Text"/>: one line, so it never ends the row).</summary>
    internal static string Cell(string value) => Text(value);

    /// <summary>Inline text on one line: Markdown punctuation backslash-escaped (<c>|</c> included, so it never ends a
    /// cell), <c>&amp; &lt; &gt;</c> as entities (no HTML passes), line breaks as <c>&lt;br&gt;</c> (so a value never ends a
    /// row, a list item or a heading), control characters as <c>\xNN</c>.</summary>
    internal static string Text(string value)
    {
        var sb = new StringBuilder(value.Length + 8);
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            switch (c)
            {
                case '\\' or '`' or '*' or '_' or '[' or ']' or '|' or '~' or '#' or '!':
                    sb.Append('\\').Append(c);
                    break;
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '\r' when i + 1 < value.Length && value[i + 1] == '\n': break; // CR LF: one break
                case '\n' or '\r': sb.Append("<br>"); break;
                case '\t': sb.Append(c); break;
                case < ' ' or (>= '\u007f' and <= '\u009f'):
                    sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:X2}");
                    break;
                default: sb.Append(c); break;
            }
        }
        return sb.ToString();
    }

    /// <summary><see cref="Text"/> for a line of its own: a leading list, heading-underline or ordered-list marker is
    /// escaped too, so a value never turns its paragraph into a list.</summary>
    internal static string Paragraph(string value)
    {
        string text = Text(value);
        int digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }
        return text.Length > 0 && text[0] is '-' or '+' or '=' ? "\\" + text
            : digits > 0 && digits < text.Length && text[digits] is '.' or ')' ? string.Concat(text.AsSpan(0, digits), "\\", text.AsSpan(digits))
            : text;
    }

    /// <summary>Text inside raw HTML (a <c>details</c> summary): markup characters as entities, control characters
    /// (line breaks included, which could end the HTML block) as <c>\xNN</c>.</summary>
    private static string Html(string value) => Controls(value.Replace("&", "&amp;", StringComparison.Ordinal)
        .Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal));

    private static string Controls(string value)
    {
        var sb = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            if (c is (< ' ' and not '\t') or (>= '\u007f' and <= '\u009f'))
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:X2}");
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}
