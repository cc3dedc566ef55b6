using Microsoft.Playwright;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// A page opened in Debian's headless Chromium through Microsoft.Playwright (its driver ships in the NuGet package; no
/// browser is downloaded: <see cref="ChromiumPath"/> is launched). Records every request the page's context issues (the
/// file:// document included), console messages (Content-Security-Policy violations are reported there), page errors
/// and dialogs (an injected <c>alert</c> would open one).
/// </summary>
internal sealed class ReportsBrowser : IAsyncDisposable
{
    /// <summary>Debian's chromium.</summary>
    public const string ChromiumPath = "/usr/bin/chromium";

    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;

    private ReportsBrowser(IPlaywright playwright, IBrowser browser, IPage page)
    {
        _playwright = playwright;
        _browser = browser;
        Page = page;
    }

    public IPage Page { get; }

    /// <summary>URLs of every request, in order.</summary>
    public List<string> Requests { get; } = [];

    /// <summary>Console messages as "type: text".</summary>
    public List<string> Console { get; } = [];

    /// <summary>Uncaught script errors.</summary>
    public List<string> Errors { get; } = [];

    /// <summary>Messages of dialogs (alert, confirm) the page opened.</summary>
    public List<string> Dialogs { get; } = [];

    /// <summary>Skips the test when chromium is absent, unless CI requires it (CLOUDMEM_REQUIRE_FIXTURES=1): then it fails.</summary>
    public static void RequireChromium()
    {
        bool present = File.Exists(ChromiumPath);
        if (!present && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException($"{ChromiumPath} is required (CLOUDMEM_REQUIRE_FIXTURES=1) but missing: tests/run.sh installs Debian's chromium");
        }
        Skip.IfNot(present, $"{ChromiumPath} is not installed (apt-get install chromium; tests/run.sh does)");
    }

    /// <summary>Launches chromium (headless, no sandbox: tests run as root) and opens <paramref name="htmlPath"/>,
    /// waiting for its load event; each step has a timeout.</summary>
    public static async Task<ReportsBrowser> OpenAsync(string htmlPath, int width = 1280, int height = 1400, ColorScheme colours = ColorScheme.Light)
    {
        RequireChromium();
        IPlaywright playwright = await Playwright.CreateAsync();
        IBrowser browser;
        try
        {
            browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ChromiumPath,
                Headless = true,
                Timeout = 60_000,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"],
            });
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
        IBrowserContext context = await browser.NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = width, Height = height },
            ServiceWorkers = ServiceWorkerPolicy.Block,
            ColorScheme = colours,
        });
        IPage page = await context.NewPageAsync();
        page.SetDefaultTimeout(20_000);
        var session = new ReportsBrowser(playwright, browser, page);
        context.Request += (_, request) => { lock (session.Requests) { session.Requests.Add(request.Url); } };
        page.Console += (_, message) => { lock (session.Console) { session.Console.Add($"{message.Type}: {message.Text}"); } };
        page.PageError += (_, error) => { lock (session.Errors) { session.Errors.Add(error); } };
        page.Dialog += (_, dialog) =>
        {
            lock (session.Dialogs)
            {
                session.Dialogs.Add(dialog.Message);
            }
            _ = dialog.DismissAsync();
        };
        try
        {
            await page.GotoAsync(new Uri(Path.GetFullPath(htmlPath)).AbsoluteUri, new PageGotoOptions { WaitUntil = WaitUntilState.Load, Timeout = 30_000 });
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
        return session;
    }

    /// <summary>Requests other than the document itself (what must stay empty for a report).</summary>
    public List<string> OtherRequests(string htmlPath)
    {
        string self = new Uri(Path.GetFullPath(htmlPath)).AbsoluteUri;
        lock (Requests)
        {
            return [.. Requests.Where(u => u != self)];
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.CloseAsync();
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }
}
