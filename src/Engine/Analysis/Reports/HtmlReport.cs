using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis.Reports;

/// <summary>
/// The case report as one self-contained HTML file: summary first, then findings by severity with their evidence rows,
/// the process tree, the network endpoints, the timeline (with a filter box), the plugin runs and, collapsed, every
/// plugin table. It makes no network request: the style sheet and the script are inline, there are no images or fonts,
/// and a Content-Security-Policy allows only that style sheet and that script (by hash) and nothing else, so even an
/// element injected through a value could neither load anything nor run. Every value is HTML-escaped (row values come
/// from the captured machine's memory, which an attacker controls). Large parts are capped (the page says how many rows
/// it leaves out; the case database has them all).
/// </summary>
public static class HtmlReport
{
    private static readonly string s_css = Resource("report.css");
    private static readonly string s_js = Resource("report.js");

    /// <summary>The Content-Security-Policy of every report: nothing may load, only the report's own inline style sheet
    /// and script (by SHA-256) apply.</summary>
    public static string ContentSecurityPolicy { get; } =
        $"default-src 'none'; style-src '{Hash(s_css)}'; script-src '{Hash(s_js)}'; img-src 'none'; font-src 'none'; " +
        "connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; worker-src 'none'; manifest-src 'none'; " +
        "base-uri 'none'; form-action 'none'";

    /// <summary>Writes the report of <paramref name="report"/> to <paramref name="writer"/> (UTF-8 is what the page
    /// declares). Does not close the writer. Odd values (cycles in parent links, control characters, huge tables) are
    /// drawn, never thrown on.</summary>
    public static void Write(CaseReport report, TextWriter writer)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(writer);
        var view = new CaseReportView(report);
        var w = new HtmlOut(writer);
        CaseProvenance p = report.Provenance;
        w.Raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        w.Raw("<meta http-equiv=\"Content-Security-Policy\" content=\"").Text(ContentSecurityPolicy).Raw("\">\n");
        w.Raw("<meta name=\"referrer\" content=\"no-referrer\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        w.Raw("<title>").Text($"CloudMem case report: {Path.GetFileName(p.ImagePath)}").Raw("</title>\n");
        w.Raw("<style>").Raw(s_css).Raw("</style>\n</head>\n<body>\n");
        w.Raw("<header><h1>CloudMem case report</h1><p class=\"sub\">").Text(p.ImagePath).Raw("</p></header>\n");
        w.Raw("<nav><a href=\"#summary\">Summary</a><a href=\"#findings\">Findings</a><a href=\"#processes\">Processes</a>" +
              "<a href=\"#network\">Network</a><a href=\"#timeline\">Timeline</a><a href=\"#runs\">Plugin runs</a><a href=\"#tables\">Tables</a></nav>\n");
        Summary(w, view);
        Findings(w, view);
        Processes(w, view);
        Network(w, view);
        Timeline(w, view);
        Runs(w, view);
        Tables(w, view);
        w.Raw("<footer>Written by CloudMem at ").Text(CaseReportView.Time(p.AnalysedAt))
         .Raw(". This page loads nothing from any network; case.sqlite holds every row.</footer>\n");
        w.Raw("<script>").Raw(s_js).Raw("</script>\n</body>\n</html>\n");
    }

    private static void Summary(HtmlOut w, CaseReportView view)
    {
        CaseReport r = view.Report;
        CaseProvenance p = r.Provenance;
        w.Raw("<section id=\"summary\">\n<h2>Summary</h2>\n");
        w.Raw("<p id=\"finding-count\"><strong>").Text(view.FindingsHeadline()).Raw("</strong></p>\n");
        w.Raw("<div class=\"counts\">");
        foreach (Severity s in CaseReportView.Severities)
        {
            int n = view.Count(s);
            w.Raw($"<div class=\"count sev-{Css(s)}{(n > 0 ? " nonzero" : "")}\" data-severity=\"{Css(s)}\"><span class=\"n\">")
             .Text(n.ToString(CultureInfo.InvariantCulture)).Raw("</span><span class=\"sevname\">").Text(CaseReportView.SeverityName(s)).Raw("</span></div>");
        }
        w.Raw("</div>\n<table class=\"facts\">\n");
        foreach ((string name, string value) in view.Facts())
        {
            Fact(w, name, value);
        }
        w.Raw("</table>\n");
        if (p.Custody is { Count: > 0 } custody)
        {
            w.Raw("<h3>Custody</h3>\n<table class=\"facts\" id=\"custody\">\n");
            foreach (KeyValuePair<string, string> fact in custody)
            {
                Fact(w, fact.Key, fact.Value);
            }
            w.Raw("</table>\n");
        }
        w.Raw("</section>\n");
    }

    private static void Findings(HtmlOut w, CaseReportView view)
    {
        w.Raw("<section id=\"findings\">\n<h2>Findings</h2>\n");
        if (view.Findings.Count == 0)
        {
            w.Raw("<p>No rule matched.</p>\n");
        }
        int index = 0;
        foreach (IGrouping<Severity, Finding> group in view.Findings.GroupBy(f => f.Severity))
        {
            w.Raw($"<h3 class=\"sev-{Css(group.Key)}\"><span class=\"sevname\">").Text(CaseReportView.SeverityName(group.Key))
             .Raw("</span> (").Text(group.Count().ToString(CultureInfo.InvariantCulture)).Raw(")</h3>\n");
            foreach (Finding f in group)
            {
                w.Raw($"<article class=\"finding sev-{Css(f.Severity)}\" id=\"{CaseReportView.FindingId(index++)}\">\n<h4>").Text(f.Title).Raw("</h4>\n");
                w.Raw("<p class=\"meta\"><span>").Text(f.RuleId).Raw("</span><span title=\"MITRE ATT&amp;CK technique\">ATT&amp;CK ").Text(f.Technique)
                 .Raw("</span><span>confidence ").Text(CaseReportView.Confidence(f.Confidence)).Raw("</span>");
                if (f.Pid is not null || f.ProcessName is not null)
                {
                    w.Raw("<span>process ").Text(CaseReportView.Number(f.Pid)).Raw(" ").Text(f.ProcessName ?? "").Raw("</span>");
                }
                w.Raw("</p>\n<p>").Text(f.Summary).Raw("</p>\n");
                Evidence(w, f.Evidence);
                w.Raw("</article>\n");
            }
        }
        w.Raw("</section>\n");
    }

    private static void Evidence(HtmlOut w, IReadOnlyList<Evidence> evidence)
    {
        foreach ((string plugin, IReadOnlyList<RowColumn> columns, IReadOnlyList<Evidence> rows) in CaseReportView.EvidenceTables(evidence))
        {
            w.Raw("<div class=\"evidence\"><div class=\"scroll\"><table>\n<caption>").Text($"{plugin}: {Plural(rows.Count, "row")}").Raw("</caption>\n<thead><tr><th>row key</th>");
            foreach (RowColumn c in columns)
            {
                w.Raw("<th>").Text(c.Name).Raw("</th>");
            }
            w.Raw("</tr></thead>\n<tbody>\n");
            foreach (Evidence e in rows)
            {
                w.Raw("<tr><td>").Text(e.RowKey).Raw("</td>");
                foreach (RowColumn c in columns)
                {
                    w.Raw("<td>").Text(CaseReportView.Cell(c, e.Row)).Raw("</td>");
                }
                w.Raw("</tr>\n");
            }
            w.Raw("</tbody></table></div>\n");
            foreach (Evidence e in rows)
            {
                if (CaseReportView.Detail(e.Row) is { } detail)
                {
                    w.Raw("<details><summary>").Text(detail.Title).Raw("</summary><pre>").Text(string.Join('\n', detail.Lines));
                    if (detail.Omitted > 0)
                    {
                        w.Text($"\n… {detail.Omitted.ToString(CultureInfo.InvariantCulture)} more lines");
                    }
                    w.Raw("</pre></details>\n");
                }
            }
            w.Raw("</div>\n");
        }
        Omitted(w, evidence.Count - ReportCaps.EvidenceRows, "evidence rows");
    }

    private static void Processes(HtmlOut w, CaseReportView view)
    {
        IReadOnlyList<CaseProcess> all = view.Report.Processes;
        w.Raw("<section id=\"processes\">\n<h2>Processes</h2>\n");
        w.Raw("<p class=\"meta\">").Text($"{Plural(all.Count, "process", "processes")} under their parents; marked: hidden from the kernel's list, and processes with findings.").Raw("</p>\n");
        int level = -1;
        foreach (TreeNode node in view.Tree)
        {
            if (node.Depth > level)
            {
                for (; level < node.Depth; level++)
                {
                    w.Raw(level < 0 ? "<ul class=\"tree\" id=\"process-tree\">\n" : "<ul>\n");
                }
            }
            else
            {
                w.Raw("</li>\n");
                for (; level > node.Depth; level--)
                {
                    w.Raw("</ul></li>\n");
                }
            }
            ProcessItem(w, view, node);
        }
        if (level >= 0)
        {
            w.Raw("</li>\n");
            for (; level > 0; level--)
            {
                w.Raw("</ul></li>\n");
            }
            w.Raw("</ul>\n");
        }
        Omitted(w, all.Count - view.Tree.Count, "processes");
        w.Raw("</section>\n");
    }

    private static void ProcessItem(HtmlOut w, CaseReportView view, TreeNode node)
    {
        CaseProcess p = node.Process;
        string classes = "proc" + (p.Hidden ? " hidden-proc" : "") + (node.Worst is { } s ? $" flagged sev-{Css(s)}" : "");
        w.Raw($"<li class=\"{classes}\" data-pid=\"").Text(p.Pid.ToString(CultureInfo.InvariantCulture)).Raw("\"><span class=\"row\"><span class=\"pid\">")
         .Text(p.Pid.ToString(CultureInfo.InvariantCulture)).Raw("</span> <span class=\"name\">").Text(p.Name).Raw("</span>");
        if (p.Hidden)
        {
            w.Raw("<span class=\"badge sev-high\">hidden</span>");
        }
        if (node.Worst is { } worst)
        {
            int first = IndexOfFirstFinding(view, p.Pid);
            w.Raw($"<a class=\"badge sev-{Css(worst)}\" href=\"#{CaseReportView.FindingId(first)}\">").Text(CaseReportView.SeverityName(worst)).Raw("</a>");
        }
        if (node.Clamped)
        {
            w.Raw("<span class=\"badge\">deeper</span>");
        }
        if (p.Start is not null)
        {
            w.Raw("<span class=\"cmd\">").Text(CaseReportView.Time(p.Start)).Raw("</span>");
        }
        if (p.CommandLine is { Length: > 0 } cmd)
        {
            w.Raw("<span class=\"cmd\">").Text(CaseReportView.Clip(cmd)).Raw("</span>");
        }
        w.Raw("</span>");
    }

    private static int IndexOfFirstFinding(CaseReportView view, long pid)
    {
        for (int i = 0; i < view.Findings.Count; i++)
        {
            if (view.Findings[i].Pid == pid)
            {
                return i;
            }
        }
        return 0;
    }

    private static void Network(HtmlOut w, CaseReportView view)
    {
        IReadOnlyList<CaseConnection> all = view.Report.Connections;
        w.Raw("<section id=\"network\">\n<h2>Network</h2>\n");
        if (all.Count == 0)
        {
            w.Raw("<p>No network endpoint was found.</p>\n</section>\n");
            return;
        }
        w.Raw("<div class=\"scroll\"><table id=\"network-table\">\n<thead><tr><th>pid</th><th>process</th><th>protocol</th><th>local</th><th>remote</th><th>state</th></tr></thead>\n<tbody>\n");
        foreach (CaseConnection c in all.Take(ReportCaps.Connections))
        {
            bool flagged = c.Pid is { } pid && view.WorstByPid.ContainsKey(pid);
            w.Raw(flagged ? "<tr class=\"flagged\">" : "<tr>");
            Cells(w, CaseReportView.Number(c.Pid), c.Process ?? "-", c.Protocol, c.Local, c.Remote ?? "-", c.State ?? "-");
            w.Raw("</tr>\n");
        }
        w.Raw("</tbody></table></div>\n");
        Omitted(w, all.Count - ReportCaps.Connections, "endpoints");
        w.Raw("</section>\n");
    }

    private static void Timeline(HtmlOut w, CaseReportView view)
    {
        IReadOnlyList<TimelineEvent> all = view.Timeline;
        w.Raw("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
        if (all.Count == 0)
        {
            w.Raw("<p>No timestamped event was found.</p>\n</section>\n");
            return;
        }
        w.Raw("<p class=\"meta\">Oldest first, UTC.</p>\n");
        w.Raw("<div id=\"timeline-tools\" hidden><input id=\"timeline-filter\" type=\"search\" placeholder=\"Filter: words that must all appear\" aria-label=\"Filter the timeline\"> <span id=\"timeline-shown\"></span></div>\n");
        w.Raw("<div class=\"scroll\"><table id=\"timeline-table\">\n<thead><tr><th>time</th><th>source</th><th>kind</th><th>pid</th><th>description</th></tr></thead>\n<tbody>\n");
        foreach (TimelineEvent e in all.Take(ReportCaps.TimelineEvents))
        {
            w.Raw("<tr>");
            Cells(w, CaseReportView.Time(e.Time), e.Source, e.Kind, CaseReportView.Number(e.Pid), CaseReportView.Clip(e.Description));
            w.Raw("</tr>\n");
        }
        w.Raw("</tbody></table></div>\n");
        Omitted(w, all.Count - ReportCaps.TimelineEvents, "events (the newest)");
        w.Raw("</section>\n");
    }

    private static void Runs(HtmlOut w, CaseReportView view)
    {
        w.Raw("<section id=\"runs\">\n<h2>Plugin runs</h2>\n<div class=\"scroll\"><table id=\"runs-table\">\n<thead><tr><th>plugin</th><th>time</th><th>rows</th><th>result</th><th>notes</th></tr></thead>\n<tbody>\n");
        foreach (PluginRun run in view.Report.Runs)
        {
            w.Raw(run.Error is null ? "<tr>" : "<tr class=\"failed\">");
            Cells(w, run.Plugin, CaseReportView.Elapsed(run.Elapsed), run.Rows.ToString(CultureInfo.InvariantCulture),
                run.Error is null ? "ok" : "failed: " + run.Error, CaseReportView.Clip(string.Join('\n', run.Notes)));
            w.Raw("</tr>\n");
        }
        w.Raw("</tbody></table></div>\n</section>\n");
    }

    private static void Tables(HtmlOut w, CaseReportView view)
    {
        w.Raw("<section id=\"tables\">\n<h2>Plugin tables</h2>\n<p><button id=\"tables-toggle\" type=\"button\" hidden>Expand all tables</button></p>\n");
        foreach (IRowsReport table in view.Report.Tables)
        {
            IReadOnlyList<object> rows = table.BoxedRows;
            IReadOnlyList<RowColumn> columns = CaseReportView.TableColumns(table.RowType, table.Columns);
            w.Raw("<details><summary>").Text($"{table.Title}: {Plural(rows.Count, "row")}").Raw("</summary>\n<div class=\"scroll\"><table>\n<thead><tr>");
            foreach (RowColumn c in columns)
            {
                w.Raw("<th>").Text(c.Name).Raw("</th>");
            }
            w.Raw("</tr></thead>\n<tbody>\n");
            foreach (object row in rows.Take(ReportCaps.PluginTableRows))
            {
                w.Raw("<tr>");
                foreach (RowColumn c in columns)
                {
                    w.Raw("<td>").Text(CaseReportView.Cell(c, row)).Raw("</td>");
                }
                w.Raw("</tr>\n");
            }
            w.Raw("</tbody></table></div>\n");
            Omitted(w, rows.Count - ReportCaps.PluginTableRows, "rows");
            foreach (string note in table.Notes)
            {
                w.Raw("<p class=\"meta\">Note: ").Text(note).Raw("</p>\n");
            }
            w.Raw("</details>\n");
        }
        w.Raw("</section>\n");
    }

    private static void Fact(HtmlOut w, string name, string value)
        => w.Raw("<tr><th>").Text(name).Raw("</th><td>").Text(value).Raw("</td></tr>\n");

    private static void Cells(HtmlOut w, params string[] values)
    {
        foreach (string v in values)
        {
            w.Raw("<td>").Text(v).Raw("</td>");
        }
    }

    private static void Omitted(HtmlOut w, int omitted, string what)
    {
        if (omitted > 0)
        {
            w.Raw("<p class=\"omitted\">").Text(CaseReportView.Omitted(omitted, what)).Raw("</p>\n");
        }
    }

    private static string Plural(int n, string one, string? many = null)
        => $"{n.ToString(CultureInfo.InvariantCulture)} {(n == 1 ? one : many ?? one + "s")}";

    private static string Css(Severity severity) => severity.ToString().ToLowerInvariant();

    private static string Hash(string text) => "sha256-" + System.Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    private static string Resource(string name)
    {
        using Stream stream = typeof(HtmlReport).Assembly.GetManifestResourceStream("CloudMem.Engine.Analysis.Reports." + name)
            ?? throw new InvalidOperationException($"the engine assembly lacks its embedded resource {name}");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>Writes markup as given and text escaped.</summary>
    private sealed class HtmlOut(TextWriter writer)
    {
        public HtmlOut Raw(string markup)
        {
            writer.Write(markup);
            return this;
        }

        /// <summary>Escapes text for element content and quoted attribute values: the five markup characters become
        /// entities; control characters (which HTML forbids) and unpaired surrogates are shown as <c>\xNN</c> / U+FFFD.</summary>
        public HtmlOut Text(string text)
        {
            var sb = new StringBuilder(text.Length + 16);
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                switch (c)
                {
                    case '&': sb.Append("&amp;"); break;
                    case '<': sb.Append("&lt;"); break;
                    case '>': sb.Append("&gt;"); break;
                    case '"': sb.Append("&quot;"); break;
                    case '\'': sb.Append("&#39;"); break;
                    case '\n' or '\t': sb.Append(c); break;
                    case < ' ' or (>= '\u007f' and <= '\u009f'):
                        sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:X2}");
                        break;
                    default:
                        if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                        {
                            sb.Append(c).Append(text[++i]);
                        }
                        else if (char.IsSurrogate(c) || c is '\uFFFE' or '\uFFFF')
                        {
                            sb.Append('\uFFFD');
                        }
                        else
                        {
                            sb.Append(c);
                        }
                        break;
                }
            }
            writer.Write(sb);
            return this;
        }
    }
}
