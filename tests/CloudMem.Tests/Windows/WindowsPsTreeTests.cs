using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>windows.pstree on the synthetic images: tree order, depths and the suspicious-parent rules.</summary>
public sealed class WindowsPsTreeTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The typical scenario plus wininit/lsass (clean) and an svchost started by WINWORD.EXE.</summary>
    public static IReadOnlyList<WindowsScenarioProcess> Scenario()
    {
        var boot = new DateTime(2024, 7, 7, 9, 30, 0, DateTimeKind.Utc);
        return
        [
            .. WindowsImageBuilder.TypicalScenario(),
            new(520, 440, "wininit.exe", boot.AddSeconds(6)),
            new(628, 520, "lsass.exe", boot.AddSeconds(7.5)),
            new(7000, 5120, "svchost.exe", boot.AddMinutes(44)),
        ];
    }

    private WindowsKernel Open(string guid, IReadOnlyList<WindowsScenarioProcess> scenario, out RunMappedMemory memory)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        (byte[] image, _) = new WindowsImageBuilder(types, guid, 1).Build(scenario);
        memory = CaptureOpener.Open(_dir.Write($"tree-{guid}.raw", image));
        return WindowsKernel.Open(memory, new SymbolStore([root]));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Tree_flags_office_shell_and_svchost_under_a_wrong_parent(string guid)
    {
        WindowsKernel kernel = Open(guid, Scenario(), out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsProcessTree.PsTree(kernel);
            List<WindowsProcessTreeRow> rows = WindowsProcessTree.Build(WindowsProcesses.List(kernel).Processes, WindowsProcessTree.DefaultRules);
            foreach (WindowsProcessTreeRow r in rows)
            {
                output.WriteLine($"{r.Depth} {r.Tree,-24} {r.Pid,5} {r.Ppid,5} {r.Suspicious}");
            }
            Assert.Equal(
                [
                    (0, "System", 4L), (1, "  smss.exe", 348L), (0, "csrss.exe", 452L), (0, "wininit.exe", 520L),
                    (1, "  services.exe", 612L), (2, "    svchost.exe", 780L), (1, "  lsass.exe", 628L),
                    (0, "WINWORD.EXE", 5120L), (1, "  powershell.exe", 6044L), (1, "  svchost.exe", 7000L),
                ],
                rows.Select(r => (r.Depth, r.Tree, r.Pid)));
            Assert.StartsWith("office-spawns-shell: Office/browser process started a shell or script host (parent WINWORD.EXE pid 5120)",
                rows.Single(r => r.Pid == 6044).Suspicious);
            Assert.Equal("svchost-parent: svchost.exe not started by services.exe (parent WINWORD.EXE pid 5120)", rows.Single(r => r.Pid == 7000).Suspicious);
            Assert.All(rows.Where(r => r.Pid is not (6044 or 7000)), r => Assert.Null(r.Suspicious));
        }
    }

    private static WindowsProcess P(long pid, long ppid, string name, int minute)
    {
        var t = new DateTime(2024, 7, 7, 9, 30, 0, DateTimeKind.Utc).AddMinutes(minute);
        return new WindowsProcess(0, pid, ppid, name, t, 0);
    }

    [Fact]
    public void Rules_are_case_insensitive_handle_truncated_names_and_a_second_lsass()
    {
        WindowsProcess[] processes =
        [
            P(500, 400, "WinInit.exe", 0),
            P(600, 500, "LSASS.EXE", 1),
            P(610, 500, "lsass.exe", 2),          // a second one, right parent
            P(700, 999, "lsass.exe", 3),          // parent not on the list
            P(800, 500, "iexplore.exe", 4),
            P(810, 800, "powershell.exe", 5),
            P(900, 1, "OUTLOOK.EXE", 6),
            P(910, 900, "cmd.exe", 7),
            P(920, 900, "notepad.exe", 8),        // clean: not a shell
            P(930, 910, "rundll32.exe", 9),       // clean: parent is cmd.exe
        ];
        var rules = new List<SuspiciousParentRule>(WindowsProcessTree.DefaultRules)
        {
            new("long-name", ParentRuleKind.ForbiddenParent, ["averyveryverylongname.exe"], ["wininit.exe"], "test rule"),
        };
        var withLong = processes.Append(P(940, 500, "averyveryverylo", 10)).ToArray();

        List<string>[] reasons = WindowsProcessTree.Evaluate(withLong, rules);

        string[] flagged = [.. reasons.Select((r, i) => (r, i)).Where(x => x.r.Count > 0).Select(x => $"{withLong[x.i].Pid}:{string.Join(",", x.r.Select(s => s[..s.IndexOf(':')]))}")];
        Assert.Equal(["610:lsass-single", "700:lsass-parent,lsass-single", "810:office-spawns-shell", "910:office-spawns-shell", "940:long-name"], flagged);
        Assert.Contains("parent pid 999 not on the list", reasons[3][0]);
    }
}
