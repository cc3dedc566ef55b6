using System.Diagnostics;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// Case models for the report tests, built from REAL plugin runs (through <see cref="PluginRegistry"/> and one
/// <see cref="PluginContext"/>, as the CLI runs them) on the basic Linux fixture and the Windows attack image.
/// TEST DATA, marked as such: the findings are written by hand here (the rule engine is another piece of work), but
/// every evidence row is a real row those plugins returned; and since the Linux rows carry times as seconds since boot,
/// the timeline anchors boot at <see cref="LinuxBoot"/>.
/// </summary>
internal static class ReportsCases
{
    /// <summary>TEST DATA: the wall-clock time the Linux timeline places boot at.</summary>
    public static readonly DateTimeOffset LinuxBoot = new(2026, 12, 6, 11, 20, 0, TimeSpan.Zero);

    private static readonly string[] s_linuxPlugins =
        ["linux.pslist", "linux.psaux", "linux.psscan", "linux.sockstat", "linux.lsmod", "linux.malfind", "linux.dmesg", "linux.envars"];

    /// <summary>The case of the basic fixture (skips when it is not built, unless CI requires it).</summary>
    public static CaseReport LinuxBasic()
    {
        string image = Fixture.Require("memory.lime");
        using RunMappedMemory memory = CaptureOpener.Open(image);
        var context = new PluginContext(memory, image);
        (List<PluginRun> runs, List<IRowsReport> tables) = Run(context, s_linuxPlugins);
        // A run that fails the way the registry refuses it (linux.procdump needs --pid and --out): the report must list it.
        runs.Add(Failed("linux.procdump", PluginRegistry.Validate(PluginRegistry.Get("linux.procdump").Info, PluginArguments.None)!));

        var pslist = Table<LinuxProcess>(tables, "linux.pslist");
        var sockets = Table<LinuxSocket>(tables, "linux.sockstat");
        var modules = Table<LinuxModule>(tables, "linux.lsmod");
        var malfind = Table<LinuxMalfindRow>(tables, "linux.malfind");
        var dmesg = Table<LinuxDmesgRecord>(tables, "linux.dmesg");

        // The processes and endpoints as analyze derives them (hidden: off the task list, in the pid table, not exited).
        IReadOnlyList<CaseProcess> processes = CaseViews.Processes(tables, LinuxBoot);
        IReadOnlyList<CaseConnection> connections = CaseViews.Connections(tables);

        List<TimelineEvent> timeline = [.. pslist.Rows.Where(p => p.StartSeconds is not null)
            .Select(p => new TimelineEvent(LinuxBoot.AddSeconds(p.StartSeconds!.Value), "linux.pslist", "process start", $"{p.Pid} {p.Comm}", p.Pid))];
        timeline.AddRange(dmesg.Rows.Select(d => new TimelineEvent(LinuxBoot.AddSeconds(d.TimestampSeconds), "linux.dmesg", "log", d.Text, null)));
        timeline.Sort((a, b) => a.Time.CompareTo(b.Time));

        // TEST DATA: hand-written findings whose evidence are the real rows of the fixture's planted processes.
        LinuxSocket listener = sockets.Rows.First(s => s.Pid == 95 && s.LocalPort == 4444);
        LinuxMalfindRow memfd = malfind.Rows.First(r => r.Pid == 104);
        List<Finding> findings =
        [
            new("TEST-LNX-001", "Netcat listening on port 4444", Severity.High, "T1059.004", 0.9,
                "nc (pid 95) listens on TCP port 4444, a port reverse shells use.", 95, "nc",
                [new Evidence("linux.sockstat", $"pid=95,fd={listener.Fd}", listener), Row("linux.pslist", pslist.Rows.First(p => p.Pid == 95))]),
            new("TEST-LNX-002", "Code runs from a memfd", Severity.Critical, "T1620", 0.95,
                $"pid 104 executes {memfd.Path} at 0x{memfd.Start:X}.", 104, memfd.Comm,
                [.. malfind.Rows.Where(r => r.Pid == 104).Select(r => new Evidence("linux.malfind", $"pid=104,start=0x{r.Start:X}", r))]),
            new("TEST-LNX-003", "Kernel modules loaded", Severity.Info, "T1547.006", 0.2,
                $"{modules.Rows.Count} modules are loaded.", null, null,
                [.. modules.Rows.Select(m => new Evidence("linux.lsmod", $"name={m.Name}", m))]),
        ];
        var provenance = new CaseProvenance(image, "LiME", memory.Runs.Sum(r => (long)r.Length), Sha256Of(image), "Linux",
            Fixture.KernelRelease(), DateTimeOffset.UtcNow, [new("captured by", "tests/fixtures/make-fixture.sh (QMP pmemsave)"), new("variant", "basic")]);
        return new CaseReport(provenance, runs, tables, findings, processes, connections, timeline);
    }

    /// <summary>The case of the Windows 10 attack image (windows.pslist/pstree/psscan/malfind/netscan/cmdline).</summary>
    public static CaseReport WindowsAttack(WindowsAttackImages images)
    {
        WindowsAttackImages.Built built = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        var context = new PluginContext(memory, built.Raw, new SymbolOptions([built.Root]));
        (List<PluginRun> runs, List<IRowsReport> tables) = Run(context, ["windows.pslist", "windows.psscan", "windows.cmdline", "windows.malfind", "windows.netscan"]);
        var pslist = Table<WindowsProcess>(tables, "windows.pslist");
        var malfind = Table<WindowsMalfindRow>(tables, "windows.malfind");
        IReadOnlyList<CaseProcess> processes = CaseViews.Processes(tables, linuxBoot: null);
        List<TimelineEvent> timeline = [.. pslist.Rows.Where(p => p.CreateTime is not null)
            .Select(p => new TimelineEvent(p.CreateTime!.Value, "windows.pslist", "process start", $"{p.Pid} {p.ImageFileName}", p.Pid)).OrderBy(e => e.Time)];
        // TEST DATA: one hand-written finding per injected region, with the real malfind row as evidence.
        List<Finding> findings = [.. malfind.Rows.Select(r => new Finding("TEST-WIN-001", "Injected code", Severity.High, "T1055", 0.8,
            $"{r.Process} (pid {r.Pid}) has executable private memory at 0x{r.Start:X}.", r.Pid, r.Process,
            [new Evidence("windows.malfind", $"pid={r.Pid},start=0x{r.Start:X}", r)]))];
        var provenance = new CaseProvenance(built.Raw, "raw", new FileInfo(built.Raw).Length, null, "Windows", WindowsSymbols.Win10, DateTimeOffset.UtcNow, null);
        return new CaseReport(provenance, runs, tables, findings, processes, [], timeline);
    }

    /// <summary>TEST DATA: a hostile process name (a script element).</summary>
    public const string ScriptName = "<script>alert(1)</script>";

    /// <summary>TEST DATA: a hostile finding title (an image that would load and run a handler).</summary>
    public const string ImgTitle = "<img src=\"http://127.0.0.1:9/pwn.png\" onerror=\"alert(2)\">";

    /// <summary>TEST DATA: a command line with quotes, ampersands, markup, a pipe and a line break.</summary>
    public const string NastyCommandLine = "sh -c \"echo a & b\" '<b>x</b>' | tee /tmp/o\nsecond line";

    /// <summary>TEST DATA: <paramref name="real"/> with attacker-style values put where memory supplies them: pid 95's
    /// name, pid 104's command line, a finding whose title and evidence row carry markup, a connection and a timeline
    /// event with pipes and line breaks.</summary>
    public static CaseReport Hostile(CaseReport real)
    {
        List<CaseProcess> processes = [.. real.Processes.Select(p => p.Pid switch
        {
            95 => p with { Name = ScriptName },
            104 => p with { CommandLine = NastyCommandLine },
            _ => p,
        })];
        LinuxProcess row = real.Findings.SelectMany(f => f.Evidence).Select(e => e.Row).OfType<LinuxProcess>().First(p => p.Pid == 95);
        Finding hostile = new("TEST-LNX-666", ImgTitle, Severity.Medium, "T1036\" onmouseover=\"alert(3)", 0.5, NastyCommandLine, 95, ScriptName,
            [new Evidence("linux.pslist", "pid=95\"><script>alert(4)</script>", row with { Comm = ScriptName, Doubt = NastyCommandLine })]);
        List<CaseConnection> connections = [.. real.Connections, new CaseConnection(95, ScriptName, "TCP", "10.0.0.1:1|2", "a\nb|c", "LISTEN")];
        List<TimelineEvent> timeline = [.. real.Timeline, new TimelineEvent(LinuxBoot.AddYears(1), "linux.bash", "command", NastyCommandLine + " " + ImgTitle, 95)];
        return real with { Processes = processes, Findings = [.. real.Findings, hostile], Connections = connections, Timeline = timeline };
    }

    /// <summary>Runs each plugin as the CLI does (registry, one shared context), timing it and keeping a failure as a run.</summary>
    private static (List<PluginRun> Runs, List<IRowsReport> Tables) Run(PluginContext context, IEnumerable<string> plugins)
    {
        var runs = new List<PluginRun>();
        var tables = new List<IRowsReport>();
        foreach (string name in plugins)
        {
            var watch = Stopwatch.StartNew();
            try
            {
                IReport report = PluginRegistry.Get(name).Run(context, PluginArguments.None, default);
                var rows = Assert.IsAssignableFrom<IRowsReport>(report);
                tables.Add(rows);
                runs.Add(new PluginRun(name, watch.Elapsed, rows.BoxedRows.Count, null, rows.Notes));
            }
            catch (Exception e) when (e is KernelNotFoundException or InvalidDataException or IOException)
            {
                runs.Add(new PluginRun(name, watch.Elapsed, 0, e.Message, []));
            }
        }
        return (runs, tables);
    }

    private static PluginRun Failed(string plugin, string error) => new(plugin, TimeSpan.Zero, 0, error, []);

    private static Evidence Row(string plugin, LinuxProcess p) => new(plugin, $"pid={p.Pid}", p);

    private static RowsReport<T> Table<T>(List<IRowsReport> tables, string name) where T : notnull
        => Assert.IsType<RowsReport<T>>(tables.Single(t => t.Title == name));

    private static string Sha256Of(string path)
    {
        using FileStream stream = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }
}
