using CloudMem.Engine.Analysis;
using CloudMem.Engine.Analysis.Reports;
using CloudMem.Tests.Support;
using Microsoft.Playwright;

namespace CloudMem.Tests.Analysis;

/// <summary>The case built once per test class from the fixture's real plugin runs (skips when the fixture is absent).</summary>
public sealed class LinuxCase
{
    private static readonly Lazy<CaseReport> s_case = new(ReportsCases.LinuxBasic); // one build for every test class

    internal CaseReport Report => s_case.Value;
}

/// <summary>
/// report.html opened in headless Chromium (Debian's package, driven by Microsoft.Playwright): what a responder sees
/// after the page's script ran, a screenshot, and the proof that the page requests nothing but itself.
/// </summary>
public sealed class ReportsBrowserTests(LinuxCase linux, WindowsAttackImages windows) : IClassFixture<LinuxCase>, IClassFixture<WindowsAttackImages>, IDisposable
{
    /// <summary>Where the screenshots are kept (beside the test binaries, not deleted).</summary>
    public static string OutputDirectory { get; } = Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "TestOutput", "reports")).FullName;

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableFact]
    public async Task The_Linux_report_shows_the_findings_count_and_the_process_tree_and_requests_nothing_but_itself()
    {
        ReportsBrowser.RequireChromium();
        CaseReport report = linux.Report;
        CaseReports.WriteAll(report, _dir.Path);
        string html = _dir.File(CaseReports.HtmlFileName);
        File.Copy(html, Path.Combine(OutputDirectory, "report-linux-basic.html"), overwrite: true); // kept beside the screenshot
        File.Copy(_dir.File(CaseReports.MarkdownFileName), Path.Combine(OutputDirectory, "report-linux-basic.md"), overwrite: true);

        await using ReportsBrowser browser = await ReportsBrowser.OpenAsync(html);
        IPage page = browser.Page;

        // The page's script ran (it is allowed by its hash in the Content-Security-Policy).
        Assert.Equal("ran", await page.GetAttributeAsync("html", "data-scripts"));
        // Findings count: the three hand-made findings of ReportsCases.LinuxBasic (one critical, one high, one info).
        Assert.Equal("3 findings, 2 of them high or critical", (await page.TextContentAsync("#finding-count"))!.Trim());
        Assert.Equal("1", await page.TextContentAsync(".count[data-severity=critical] .n"));
        Assert.Equal("1", await page.TextContentAsync(".count[data-severity=high] .n"));
        Assert.Equal(3, await page.Locator("article.finding").CountAsync());

        // The process tree of the basic fixture (its truth.json; linux.pslist also lists the idle task, pid 0): init
        // (pid 1) and kthreadd (pid 2) under swapper/0, the planted processes under init, kernel threads under kthreadd.
        Assert.Equal("swapper/0", await page.TextContentAsync("#process-tree > li[data-pid='0'] > .row .name"));
        Assert.Equal("init", await page.TextContentAsync("#process-tree > li[data-pid='0'] > ul > li[data-pid='1'] > .row .name"));
        Assert.Equal("kthreadd", await page.TextContentAsync("#process-tree > li[data-pid='0'] > ul > li[data-pid='2'] > .row .name"));
        foreach ((int pid, string name) in (List<(int, string)>)[(95, "nc"), (97, "httpd"), (101, "syslogd"), (104, "memfd:fx-filele"), (109, "nc")])
        {
            Assert.Equal(name, await page.TextContentAsync($"li[data-pid='1'] > ul > li[data-pid='{pid}'] > .row .name"));
        }
        Assert.Equal("ksoftirqd/0", await page.TextContentAsync("li[data-pid='2'] > ul > li[data-pid='14'] > .row .name"));
        // Processes with findings are marked (and link to their finding); others are not.
        Assert.Contains("flagged", await page.GetAttributeAsync("li[data-pid='95']", "class"));
        Assert.Contains("sev-critical", await page.GetAttributeAsync("li[data-pid='104']", "class"));
        Assert.DoesNotContain("flagged", await page.GetAttributeAsync("li[data-pid='97']", "class"));
        Assert.Equal("#finding-1", await page.GetAttributeAsync("li[data-pid='104'] > .row a.badge", "href"));
        Assert.Equal(report.Processes.Count, await page.Locator("#process-tree li").CountAsync());

        // The network table lists nc's listener; the timeline filter (script) narrows the events.
        Assert.Contains("4444", await page.TextContentAsync("#network-table tr.flagged"));
        int events = report.Timeline.Count;
        Assert.Equal($"{events} of {events} events shown", await page.TextContentAsync("#timeline-shown"));
        await page.FillAsync("#timeline-filter", "process start");
        int starts = report.Timeline.Count(e => e.Kind == "process start");
        Assert.Equal($"{starts} of {events} events shown", await page.TextContentAsync("#timeline-shown"));
        Assert.Equal(starts, await page.Locator("#timeline-table tbody tr:not([hidden])").CountAsync());
        await page.FillAsync("#timeline-filter", "");
        await page.EvaluateAsync("window.scrollTo(0, 0)"); // the screenshot shows what a reader sees first: the summary

        string png = Path.Combine(OutputDirectory, "report-linux-basic.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = png });
        AssertRealScreenshot(png, 1280, 1400);

        Assert.Equal([], browser.OtherRequests(html));
        Assert.Single(browser.Requests); // the document itself was seen: the counter works on this page
        Assert.Equal([], browser.Console.Where(m => m.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase) || m.StartsWith("error", StringComparison.Ordinal)).ToList());
        Assert.Equal([], browser.Errors);
    }

    [SkippableFact]
    public async Task At_night_the_report_follows_the_dark_colour_scheme()
    {
        ReportsBrowser.RequireChromium();
        CaseReports.WriteAll(linux.Report, _dir.Path);
        string html = _dir.File(CaseReports.HtmlFileName);
        await using ReportsBrowser browser = await ReportsBrowser.OpenAsync(html, colours: ColorScheme.Dark);
        string png = Path.Combine(OutputDirectory, "report-linux-basic-dark.png");
        await browser.Page.ScreenshotAsync(new PageScreenshotOptions { Path = png });
        AssertRealScreenshot(png, 1280, 1400);
        PngImage image = PngImage.Read(File.ReadAllBytes(png));
        Assert.True(image.Pixels[0] < 48 && image.Pixels[1] < 48 && image.Pixels[2] < 48,
            $"background ({image.Pixels[0]}, {image.Pixels[1]}, {image.Pixels[2]}) is not dark");
        Assert.Equal([], browser.OtherRequests(html));
    }

    [SkippableFact]
    public async Task The_request_counter_sees_a_page_that_does_reach_for_the_network()
    {
        // Control for the test above: the same counting on a page (not a report) that loads an image and fetches.
        string page = _dir.File("control.html");
        File.WriteAllText(page, "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/a.png\">" +
            "<script>fetch('http://127.0.0.1:9/b.json').catch(function () {});</script></body></html>");
        await using ReportsBrowser browser = await ReportsBrowser.OpenAsync(page);
        List<string> others = browser.OtherRequests(page);
        for (int wait = 0; wait < 50 && others.Count < 2; wait++)
        {
            await Task.Delay(100); // request events arrive over the driver's pipe
            others = browser.OtherRequests(page);
        }
        Assert.Contains("http://127.0.0.1:9/a.png", others);
        Assert.Contains("http://127.0.0.1:9/b.json", others);
    }

    [SkippableFact]
    public async Task Hostile_values_are_text_and_inject_nothing_into_the_page()
    {
        ReportsBrowser.RequireChromium();
        CaseReport report = ReportsCases.Hostile(linux.Report);
        CaseReports.WriteAll(report, _dir.Path);
        string html = _dir.File(CaseReports.HtmlFileName);

        await using ReportsBrowser browser = await ReportsBrowser.OpenAsync(html);
        IPage page = browser.Page;

        Assert.Equal(1, await page.EvaluateAsync<int>("document.querySelectorAll('script').length"));
        Assert.Equal(0, await page.EvaluateAsync<int>("document.querySelectorAll('img, iframe, object, embed, link, b').length"));
        Assert.Equal(0, await page.EvaluateAsync<int>("document.querySelectorAll('[onerror], [onmouseover]').length"));
        Assert.Equal(ReportsCases.ScriptName, await page.TextContentAsync("li[data-pid='95'] > .row .name"));
        Assert.Equal(ReportsCases.NastyCommandLine, await page.TextContentAsync("li[data-pid='104'] > .row .cmd:last-child"));
        Assert.Equal(ReportsCases.ImgTitle, await page.TextContentAsync("article.finding.sev-medium h4"));
        string evidence = (await page.TextContentAsync("article.finding.sev-medium .evidence tbody tr"))!;
        Assert.Contains("pid=95\"><script>alert(4)</script>", evidence);
        Assert.Contains(ReportsCases.NastyCommandLine, evidence);
        Assert.Equal([], browser.Dialogs);
        Assert.Equal([], browser.OtherRequests(html));
        Assert.Equal([], browser.Errors);
        Assert.Equal("ran", await page.GetAttributeAsync("html", "data-scripts"));
    }

    [SkippableFact]
    public async Task The_Windows_attack_report_draws_word_above_its_powershell_and_marks_the_injected_processes()
    {
        ReportsBrowser.RequireChromium();
        CaseReport report = ReportsCases.WindowsAttack(windows);
        CaseReports.WriteAll(report, _dir.Path);
        string html = _dir.File(CaseReports.HtmlFileName);
        File.Copy(html, Path.Combine(OutputDirectory, "report-windows-attack.html"), overwrite: true);

        await using ReportsBrowser browser = await ReportsBrowser.OpenAsync(html);
        IPage page = browser.Page;
        // The attack scenario (tests/CloudMem.ImageBuilder): WINWORD.EXE (5120) started powershell.exe (6044).
        Assert.Equal("powershell.exe", await page.TextContentAsync("li[data-pid='5120'] > ul > li[data-pid='6044'] > .row .name"));
        Assert.Equal("WINWORD.EXE", await page.TextContentAsync("li[data-pid='5120'] > .row .name"));
        // rundll32.exe (7312), unlinked from the process list (found by windows.psscan), is drawn under WINWORD.EXE, marked hidden.
        Assert.Equal("rundll32.exe", await page.TextContentAsync("li[data-pid='5120'] > ul > li[data-pid='7312'].hidden-proc > .row .name"));
        Assert.Equal("hidden", await page.TextContentAsync("li[data-pid='7312'] > .row .badge"));
        Assert.True(report.Findings.Count > 0, "windows.malfind found no injected region on the attack image");
        Assert.Equal($"{report.Findings.Count} findings, {report.Findings.Count} of them high or critical", (await page.TextContentAsync("#finding-count"))!.Trim());
        foreach (long pid in report.Findings.Select(f => f.Pid!.Value).Distinct())
        {
            Assert.Contains("flagged", await page.GetAttributeAsync($"li[data-pid='{pid}']", "class"));
        }
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(OutputDirectory, "report-windows-attack.png") });
        AssertRealScreenshot(Path.Combine(OutputDirectory, "report-windows-attack.png"), 1280, 1400);
        Assert.Equal([], browser.OtherRequests(html));
        Assert.Equal([], browser.Errors);
    }

    /// <summary>A valid PNG of the viewport's size that is not blank: many colours (text, severity colours) and a
    /// fair share of pixels unlike the background.</summary>
    private static void AssertRealScreenshot(string path, int width, int height)
    {
        PngImage image = PngImage.Read(File.ReadAllBytes(path));
        Assert.Equal((width, height), (image.Width, image.Height));
        Assert.True(image.DistinctColours() >= 16, $"{path}: only {image.DistinctColours()} colours: a blank page?");
        double share = image.ShareNotLikeCorner();
        Assert.True(share > 0.02, $"{path}: only {share:P1} of the pixels differ from the background: a blank page?");
    }
}
