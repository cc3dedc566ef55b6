using System.Diagnostics;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// analyze on the Windows builder images: every trace the attack scenario plants is a finding with its ATT&amp;CK id and
/// evidence rows (expected findings written out here, from the scenario files, not from the output); the clean scenario
/// has no finding of high severity; case.sqlite answers the README's query with the sqlite3 tool; timeline.body reads in
/// mactime; a failing plugin is recorded and the rest goes on.
/// </summary>
public sealed class AnalyzeWindowsTests(AnalyzedImages images, ITestOutputHelper output) : IClassFixture<AnalyzedImages>
{
    /// <summary>The README's query (the test runs exactly this text).</summary>
    internal const string InjectedAndNetworkQuery =
        "SELECT DISTINCT m.Pid FROM windows_malfind m JOIN windows_netscan n ON n.Pid = m.Pid ORDER BY m.Pid;";

    private static (string, string, long?) Key(Finding f) => (f.RuleId, f.Technique, f.Pid);

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Attack_scenario_traces_are_each_a_finding_with_technique_and_evidence(string guid)
    {
        AnalyzedImages.Analyzed analyzed = images.Windows("attack", guid);
        IReadOnlyList<Finding> findings = analyzed.Report.Findings;
        foreach (Finding f in findings)
        {
            output.WriteLine($"{f.Severity} {f.RuleId} {f.Technique} {f.Pid} {f.Summary}");
        }

        // scenarios/attack.json: hollowed svchost 844 (Unmapped) and 1288 (Remapped from update.exe); WINWORD 5120 starts
        // powershell 6044 (-Enc) with a PE and a shellcode region injected and a thread starting in the shellcode; evil.dll
        // mapped in WINWORD on no loader list, amsi.dll off the load-order list in powershell; rundll32 7312 unlinked;
        // rootkit.sys unlinked from PsLoadedModuleList.
        (string, string, long?)[] expected =
        [
            ("CM-WIN-005", "T1055.012", 844), ("CM-WIN-005", "T1055.012", 1288), ("CM-WIN-008", "T1014", null),
            ("CM-WIN-001", "T1204.002", 6044), ("CM-WIN-003", "T1014", 7312), ("CM-WIN-004", "T1055", 844), ("CM-WIN-004", "T1055", 6044),
            ("CM-WIN-006", "T1055.001", 5120), ("CM-WIN-007", "T1055", 6044),
            ("CM-WIN-011", "T1059.001", 6044), ("CM-WIN-015", "T1055.001", 6044),
        ];
        Assert.Equal(expected.Order(), findings.Select(Key).Order());
        Assert.Equal([Severity.Critical, Severity.Critical, Severity.Critical], findings.Take(3).Select(f => f.Severity));

        Finding injected = findings.Single(f => f.RuleId == "CM-WIN-004" && f.Pid == 6044);
        Assert.Equal(["pid=6044,start=0x20000000000", "pid=6044,start=0x20000100000"], injected.Evidence.Select(e => e.RowKey));
        Assert.All(injected.Evidence, e => Assert.Equal("windows.malfind", e.Plugin));
        Assert.Equal(0x20000100000UL, Assert.IsType<WindowsMalfindRow>(injected.Evidence[1].Row).Start);

        Finding evil = findings.Single(f => f.RuleId == "CM-WIN-006");
        Assert.EndsWith(@"\Users\alice\AppData\Local\Temp\evil.dll", Assert.IsType<WindowsLdrModuleRow>(Assert.Single(evil.Evidence).Row).MappedPath);
        Finding driver = findings.Single(f => f.RuleId == "CM-WIN-008");
        Assert.Equal("rootkit.sys", Assert.IsType<WindowsScannedModule>(Assert.Single(driver.Evidence).Row).Name);
        Finding hollow = findings.Single(f => f.RuleId == "CM-WIN-005" && f.Pid == 1288);
        Assert.Equal(HollowSign.PathMismatch, Assert.IsType<WindowsHollowRow>(Assert.Single(hollow.Evidence).Row).Sign);
        Assert.Equal("windows.threads", Assert.Single(findings.Single(f => f.RuleId == "CM-WIN-007").Evidence).Plugin);

        // The unlinked process is in the tree as hidden; the hashdump plugin (password hashes) never runs.
        Assert.Contains(analyzed.Report.Processes, p => p is { Pid: 7312, Hidden: true, Name: "rundll32.exe" });
        Assert.DoesNotContain(analyzed.Report.Runs, r => r.Plugin == "windows.hashdump");
        Assert.All(analyzed.Report.Tables.Where(t => t.RowType.Assembly == typeof(Analyzer).Assembly), t => Assert.True(PluginTables.TryGetRowType(t.Title, out Type type) && type == t.RowType, t.Title));
    }

    [SkippableFact]
    public void Typical_scenario_has_only_its_office_shell_and_clean_scenario_nothing_high()
    {
        // typical.json keeps WINWORD 5120 -> powershell 6044 (the parent rule the process-tree tests check): that one
        // high finding and nothing else of high severity. clean.json is typical without that child: nothing high at all.
        IReadOnlyList<Finding> typical = images.Windows("typical").Report.Findings;
        Assert.Equal([("CM-WIN-001", "T1204.002", (long?)6044)], typical.Where(f => f.Severity >= Severity.High).Select(Key));
        IReadOnlyList<Finding> clean = images.Windows("clean").Report.Findings;
        Assert.DoesNotContain(clean, f => f.Severity >= Severity.High);
        Assert.Empty(clean);
    }

    [SkippableFact]
    public void Network_scenario_adds_the_shell_connections_and_the_listener()
    {
        IReadOnlyList<Finding> findings = images.Windows("network").Report.Findings;
        // network.json: powershell 6044 talks to 203.0.113.7:4444 (and 198.51.100.23:8080, unlinked from the partition
        // table); the unlinked rundll32 7312 listens on 51337.
        Assert.Equal([("CM-WIN-009", "T1059", (long?)6044), ("CM-WIN-009", "T1059", 7312)], findings.Where(f => f.RuleId == "CM-WIN-009").Select(Key));
        Assert.Equal([("CM-WIN-010", "T1571", (long?)7312)], findings.Where(f => f.RuleId == "CM-WIN-010").Select(Key));
        Finding c2 = findings.Single(f => f.RuleId == "CM-WIN-009" && f.Pid == 6044);
        Assert.Contains("203.0.113.7:4444", c2.Summary, StringComparison.Ordinal);
        Assert.Contains(c2.Evidence, e => e.Plugin == "windows.psscan" && e.RowKey.StartsWith("pid=6044,", StringComparison.Ordinal));
        Assert.Equal(2, c2.Evidence.Count(e => e.Plugin == "windows.netscan"));
        Assert.Contains(images.Windows("network").Report.Connections, c => c is { Pid: 6044, Remote: "203.0.113.7:4444", Local: "10.0.2.15:49733" });
    }

    [SkippableFact]
    public void Sqlite3_answers_which_pids_have_an_injected_region_and_a_network_connection()
    {
        RequireTool("sqlite3", "sqlite3");
        AnalyzedImages.Analyzed analyzed = images.Windows("network");
        (int exit, string stdout, string stderr) = Tool("sqlite3", Path.Combine(analyzed.CaseDirectory, "case.sqlite"), InjectedAndNetworkQuery);
        Assert.True(exit == 0, stderr);
        // network.json: malfind hits are pid 844 (hollowed, no network) and 6044 (injected, connected to 4444).
        Assert.Equal("6044", stdout.Trim());
        Assert.Contains(InjectedAndNetworkQuery, File.ReadAllText(Path.Combine(Fixture.RepoRoot, "README.md")), StringComparison.Ordinal);

        (exit, stdout, stderr) = Tool("sqlite3", Path.Combine(analyzed.CaseDirectory, "case.sqlite"),
            "SELECT printf('0x%X', Start), typeof(Start), CommitCharge FROM windows_malfind WHERE Pid = 6044 ORDER BY Start;"
            + "SELECT rule_id, technique FROM findings WHERE pid = 7312 ORDER BY rule_id;"
            + "SELECT count(*) FROM evidence e JOIN windows_malfind m ON m.row_key = e.row_key WHERE e.table_name = 'windows_malfind';");
        Assert.True(exit == 0, stderr);
        Assert.Equal(["0x20000000000|integer|3", "0x20000100000|integer|1", "CM-WIN-003|T1014", "CM-WIN-009|T1059", "CM-WIN-010|T1571", "3"],
            stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [SkippableFact]
    public void Timeline_body_file_reads_in_mactime()
    {
        RequireTool("mactime", "sleuthkit");
        AnalyzedImages.Analyzed analyzed = images.Windows("attack");
        string body = Path.Combine(analyzed.CaseDirectory, "timeline.body");
        (int exit, string stdout, string stderr) = Tool("mactime", "-b", body, "-y", "-d");
        Assert.True(exit == 0, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("Date,Size,Type,Mode,UID,GID,Meta,File Name", lines[0]);
        Assert.Equal(analyzed.Report.Timeline.Count, lines.Length - 1);
        // attack.json: powershell.exe 6044 created 2024-07-07T10:13:00.1234567Z (mactime has whole seconds).
        Assert.Contains("2024-07-07T10:13:00Z,0,macb,0,0,0,0,\"windows.pslist: process start: powershell.exe pid 6044\"", lines);
        Assert.Contains("2024-07-07T10:14:00Z,0,macb,0,0,0,0,\"windows.psscan: process start: rundll32.exe pid 7312\"", lines);
        Assert.Equal("2024-07-07T09:30:00Z", lines[1][..20]);
    }

    [SkippableFact]
    public void A_failing_plugin_is_recorded_and_the_rest_goes_on()
    {
        (string raw, string root) = images.WindowsBuilt("attack");
        var broken = new Plugin(new PluginInfo("windows.broken_for_test", "always fails", TargetOs.Windows),
            (c, a, ct) => throw new InvalidOperationException("walk went wrong\nat the second line"));
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions
        {
            ImagePath = raw,
            Symbols = new SymbolOptions([root]),
            Plugins = [.. PluginRegistry.All, broken],
        });
        PluginRun failed = report.Runs.Single(r => r.Plugin == "windows.broken_for_test");
        Assert.Equal("InvalidOperationException: walk went wrong at the second line", failed.Error);
        Assert.Equal(0, failed.Rows);
        // attack.json has no tcpip table for netstat: that real failure is one line naming tcpip.sys.
        Assert.StartsWith("tcpip.sys at 0x", report.Runs.Single(r => r.Plugin == "windows.netstat").Error, StringComparison.Ordinal);
        Assert.True(report.Runs.Count(r => r.Error is null) >= 15);
        Assert.Equal(11, report.Findings.Count);
    }

    /// <summary>Skips without <paramref name="tool"/>, except in CI (CLOUDMEM_REQUIRE_FIXTURES=1), where tests/run.sh installs it.</summary>
    internal static void RequireTool(string tool, string package)
    {
        bool present = Which(tool) is not null;
        if (!present && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException($"{tool} (Debian {package}) is required in CI but missing: tests/run.sh installs it");
        }
        Skip.IfNot(present, $"{tool} is not installed (Debian {package}; tests/run.sh installs it)");
    }

    internal static string? Which(string tool)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    internal static (int Exit, string Out, string Err) Tool(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), $"{tool} did not finish in a minute");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
