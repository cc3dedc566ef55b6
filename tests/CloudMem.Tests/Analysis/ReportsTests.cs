using System.Text.RegularExpressions;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Analysis.Reports;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Analysis;

/// <summary>report.html and report.md without a browser: structure, escaping, caps, and never overwriting.</summary>
public sealed partial class ReportsTests(LinuxCase linux) : IClassFixture<LinuxCase>, IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Html(CaseReport report)
    {
        using var writer = new StringWriter();
        HtmlReport.Write(report, writer);
        return writer.ToString();
    }

    private static string Markdown(CaseReport report)
    {
        using var writer = new StringWriter();
        MarkdownReport.Write(report, writer);
        return writer.ToString();
    }

    [SkippableFact]
    public void The_HTML_has_a_strict_policy_and_references_nothing_outside_itself()
    {
        string html = Html(ReportsCases.Hostile(linux.Report));

        Match csp = CspMeta().Match(html);
        Assert.True(csp.Success, "no Content-Security-Policy meta element");
        string policy = System.Net.WebUtility.HtmlDecode(csp.Groups[1].Value);
        Assert.StartsWith("default-src 'none';", policy);
        Assert.Matches(@"script-src 'sha256-[A-Za-z0-9+/=]{44}';", policy);
        Assert.Matches(@"style-src 'sha256-[A-Za-z0-9+/=]{44}';", policy);
        Assert.DoesNotContain("unsafe", policy);
        // Markup written by the report: one style, one script, no src attribute, links only to its own anchors.
        Assert.Single(Regex.Matches(html, "<script"));
        Assert.Single(Regex.Matches(html, "<style"));
        Assert.DoesNotMatch(@"<[a-z]+[^>]*\ssrc=", html);
        Assert.All(Regex.Matches(html, "href=\"([^\"]*)\"").Select(m => m.Groups[1].Value), href => Assert.StartsWith("#", href));
        Assert.DoesNotContain("<img", html);
        // The hostile values are there, as text.
        Assert.Contains("&lt;script&gt;alert(1)&lt;/script&gt;", html);
        Assert.Contains("sh -c &quot;echo a &amp; b&quot; &#39;&lt;b&gt;x&lt;/b&gt;&#39; | tee /tmp/o\nsecond line", html);
    }

    [SkippableFact]
    public void The_HTML_report_lists_what_the_model_holds_in_the_order_a_responder_reads()
    {
        CaseReport report = linux.Report;
        string html = Html(report);
        int[] order = [.. new[] { "id=\"summary\"", "id=\"findings\"", "id=\"processes\"", "id=\"network\"", "id=\"timeline\"", "id=\"runs\"", "id=\"tables\"" }
            .Select(id => html.IndexOf(id, StringComparison.Ordinal))];
        Assert.DoesNotContain(-1, order);
        Assert.Equal(order.Order(), order);
        // Findings most severe first, plugin runs (with the failed one and its error), every plugin table collapsed.
        Assert.True(html.IndexOf("TEST-LNX-002", StringComparison.Ordinal) < html.IndexOf("TEST-LNX-001", StringComparison.Ordinal));
        Assert.True(html.IndexOf("TEST-LNX-001", StringComparison.Ordinal) < html.IndexOf("TEST-LNX-003", StringComparison.Ordinal));
        Assert.Contains("<tr class=\"failed\"><td>linux.procdump</td>", html);
        Assert.Contains("linux.procdump needs exactly one --pid", html);
        Assert.Equal(report.Tables.Count, Regex.Matches(html, "<details><summary>linux\\.").Count);
        // Hex columns as 0x.. (RowColumn.CellOf): the malfind evidence's start address.
        var memfd = (LinuxMalfindRow)report.Findings.Single(f => f.RuleId == "TEST-LNX-002").Evidence[0].Row;
        Assert.Contains($"<td>0x{memfd.Start:X}</td>", html);
        Assert.Contains("SHA-256", html);
        Assert.Contains(report.Provenance.Sha256!, html);
        Assert.Contains("captured by", html);
    }

    [SkippableFact]
    public void Markdown_tables_keep_their_columns_with_pipes_and_line_breaks_in_values()
    {
        string md = Markdown(ReportsCases.Hostile(linux.Report));

        List<List<string>> tables = [];
        List<string>? current = null;
        foreach (string line in md.Split('\n'))
        {
            if (line.StartsWith('|'))
            {
                (current ??= []).Add(line);
            }
            else if (current is not null)
            {
                tables.Add(current);
                current = null;
            }
        }
        Assert.True(tables.Count >= 10, $"only {tables.Count} tables");
        foreach (List<string> table in tables)
        {
            int columns = Separators(table[0]);
            Assert.Matches(@"^\|( --- \|)+$", table[1]);
            Assert.All(table, row => Assert.Equal(columns, Separators(row)));
            Assert.All(table, row => Assert.EndsWith("|", row));
        }
        // The hostile values: escaped in one cell each, no raw markup.
        Assert.Contains(@"| 10.0.0.1:1\|2 | a<br>b\|c | LISTEN |", md);
        Assert.Contains(@"sh -c ""echo a &amp; b"" '&lt;b&gt;x&lt;/b&gt;' \| tee /tmp/o<br>second line", md);
        Assert.DoesNotContain("<script>", md);
        Assert.DoesNotContain("<img", md);
        Assert.Contains(@"95 &lt;script&gt;alert(1)&lt;/script&gt; **HIGH**", md);
    }

    /// <summary>Unescaped pipes of a table line (a pipe after an odd run of backslashes is text).</summary>
    private static int Separators(string line)
    {
        int count = 0, backslashes = 0;
        foreach (char c in line)
        {
            if (c == '|' && backslashes % 2 == 0)
            {
                count++;
            }
            backslashes = c == '\\' ? backslashes + 1 : 0;
        }
        return count;
    }

    [Fact]
    public void Markdown_cells_escape_markup_pipes_and_line_breaks()
    {
        Assert.Equal(@"a\|b<br>c<br>d", MarkdownReport.Cell("a|b\r\nc\nd"));
        Assert.Equal(@"&lt;b&gt; \*x\* \_y\_ \[l\](u) &amp; \`c\` \\ \#", MarkdownReport.Cell("<b> *x* _y_ [l](u) & `c` \\ #"));
        Assert.Equal(@"esc\x1B nul\x00", MarkdownReport.Cell("esc\u001b nul\0"));
        Assert.Equal(@"\- not a list", MarkdownReport.Paragraph("- not a list"));
        Assert.Equal(@"12\. not a list", MarkdownReport.Paragraph("12. not a list"));
        Assert.Equal("12 processes", MarkdownReport.Paragraph("12 processes"));
    }

    [SkippableFact]
    public void WriteAll_writes_both_reports_and_never_overwrites()
    {
        CaseReport report = linux.Report;
        CaseReports.WriteAll(report, _dir.Path);
        string html = _dir.File("report.html"), md = _dir.File("report.md");
        byte[] htmlBefore = File.ReadAllBytes(html), mdBefore = File.ReadAllBytes(md);
        Assert.StartsWith("<!DOCTYPE html>", File.ReadAllText(html));
        Assert.StartsWith("# CloudMem case report", File.ReadAllText(md));

        IOException again = Assert.ThrowsAny<IOException>(() => CaseReports.WriteAll(report with { Findings = [] }, _dir.Path));
        Assert.Contains("never overwritten", again.Message);
        Assert.Equal(htmlBefore, File.ReadAllBytes(html));
        Assert.Equal(mdBefore, File.ReadAllBytes(md));

        // Only report.md exists: refused before report.html is written.
        using var other = new TempDir();
        File.WriteAllText(other.File("report.md"), "mine");
        Assert.ThrowsAny<IOException>(() => CaseReports.WriteAll(report, other.Path));
        Assert.False(File.Exists(other.File("report.html")));
        Assert.Equal("mine", File.ReadAllText(other.File("report.md")));
        Assert.Throws<DirectoryNotFoundException>(() => CaseReports.WriteAll(report, other.File("missing")));
    }

    [SkippableFact]
    public void Large_tables_are_capped_and_say_how_many_rows_they_leave_out()
    {
        CaseReport real = linux.Report;
        // TEST DATA: the fixture's real pslist rows repeated to 5000, and 2500 copies of its first timeline event.
        var pslist = (RowsReport<LinuxProcess>)real.Tables.Single(t => t.Title == "linux.pslist");
        List<LinuxProcess> many = [.. Enumerable.Range(0, 5000).Select(i => pslist.Rows[i % pslist.Rows.Count])];
        CaseReport big = real with
        {
            Tables = [new RowsReport<LinuxProcess>("linux.pslist", many)],
            Timeline = [.. Enumerable.Repeat(real.Timeline[0], 2500)],
        };
        string html = Html(big), md = Markdown(big);
        Assert.Contains("4800 more rows not shown here; case.sqlite has them all.", html);
        Assert.Contains("500 more events (the newest) not shown here; case.sqlite has them all.", html);
        Assert.Contains("4800 more rows not shown here; case.sqlite has them all.", md);
        Assert.Equal(2000, Regex.Matches(html, "<tr><td>" + Regex.Escape(CaseReportViewTime(real.Timeline[0].Time))).Count);
        Assert.True(html.Length < 4_000_000, $"{html.Length} characters");
    }

    private static string CaseReportViewTime(DateTimeOffset time) => Engine.Output.UtcTimeConverter.Format(time);

    [Fact]
    public void The_process_tree_survives_parent_cycles_duplicates_and_deep_chains()
    {
        // TEST DATA: parent links as a hostile image could give them.
        List<CaseProcess> processes =
        [
            new(10, 11, "a", null, null, false), new(11, 10, "b", null, null, false), // a cycle
            new(12, 12, "self", null, null, false), new(12, 1, "dup", null, null, true),
            .. Enumerable.Range(100, 3000).Select(i => new CaseProcess(i, i - 1, "deep" + i, null, null, false)),
        ];
        var report = new CaseReport(new CaseProvenance("x.raw", "raw", 1, null, "Linux", null, DateTimeOffset.UnixEpoch, null),
            [], [], [], processes, [], []);
        string html = Html(report);
        Assert.Equal(processes.Count, Regex.Matches(html, "<li class=\"proc").Count);
        Assert.Equal(Regex.Matches(html, "<ul").Count, Regex.Matches(html, "</ul>").Count);
        Assert.Equal(Regex.Matches(html, "<li").Count, Regex.Matches(html, "</li>").Count);
        Assert.Contains("<span class=\"badge\">deeper</span>", html);
        string md = Markdown(report);
        Assert.Equal(processes.Count, Regex.Matches(md, @"^ *- \d+ ", RegexOptions.Multiline).Count);
    }

    [GeneratedRegex("<meta http-equiv=\"Content-Security-Policy\" content=\"([^\"]*)\">")]
    private static partial Regex CspMeta();
}
