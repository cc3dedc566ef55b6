using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Analysis;

/// <summary>The rule language: loading and checking (one-line errors), predicates, correlation, subjects, on hand-made rows.</summary>
public sealed class TriageRulesTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static LinuxProcess Process(int pid, string comm, bool kernelThread, uint? uid = 0)
        => new(0xFFFF888000000000UL + (ulong)pid * 0x1000, pid, 1, comm, uid, uid, uid, kernelThread, 1, null, 1.5, null);

    private static LinuxSocket Socket(int pid, string comm, int fd, string family, string state, int port)
        => new(pid, comm, fd, family, "STREAM", "TCP", "10.0.0.5", port, "203.0.113.9", state == "LISTEN" ? 0 : 4444, state, 100, null, 0xFFFF888000100000UL);

    private static IReadOnlyList<TriageRule> Shipped => Analyzer.LoadRules(null);

    [Fact]
    public void Shipped_rules_load_and_name_registered_plugins_with_an_attack_id()
    {
        IReadOnlyList<TriageRule> rules = Shipped;
        Assert.True(rules.Count >= 25);
        Assert.All(rules, r => Assert.True(PluginRegistry.TryGet(r.Plugin, out _), r.Id));
        Assert.All(rules, r => Assert.Matches(@"^(T\d{4}(\.\d{3})?|-)$", r.Technique));
        Assert.Equal(rules.Count, rules.Select(r => r.Id).Distinct().Count());
    }

    [Fact]
    public void A_user_process_named_like_a_kernel_thread_is_masquerading()
    {
        var pslist = new RowsReport<LinuxProcess>("linux.pslist",
            [Process(2, "kthreadd", true), Process(17, "kworker/0:1-events", true), Process(666, "[kworker/0:1]", false, 1000), Process(667, "kworker/u2:0", false), Process(700, "bash", false)]);
        IReadOnlyList<Finding> findings = RuleEngine.Evaluate(Shipped, [pslist]);
        Assert.Equal([("CM-LNX-008", "T1036.004", (long?)666), ("CM-LNX-008", "T1036.004", 667)], findings.Select(f => (f.RuleId, f.Technique, f.Pid)));
        Assert.Equal("pid 666 ([kworker/0:1]) is a user process (uid 1000) with a kernel thread's name", findings[0].Summary);
        Assert.Equal("pid=666", Assert.Single(findings[0].Evidence).RowKey);
    }

    [Fact]
    public void A_shell_with_an_inet_socket_is_found_by_correlating_sockstat_with_pslist_on_pid()
    {
        var pslist = new RowsReport<LinuxProcess>("linux.pslist", [Process(300, "bash", false), Process(301, "nginx", false), Process(302, "sh", false)]);
        var sockets = new RowsReport<LinuxSocket>("linux.sockstat",
        [
            Socket(300, "bash", 3, "AF_INET", "ESTABLISHED", 50000), Socket(300, "bash", 4, "AF_INET", "ESTABLISHED", 50001),
            Socket(301, "nginx", 5, "AF_INET", "LISTEN", 443), Socket(302, "sh", 3, "AF_UNIX", "CONNECTED", 0),
        ]);
        IReadOnlyList<Finding> findings = RuleEngine.Evaluate(Shipped, [pslist, sockets]);
        Finding shell = Assert.Single(findings, f => f.RuleId == "CM-LNX-010");
        Assert.Equal((300L, "bash", Severity.High, "T1059.004"), (shell.Pid!.Value, shell.ProcessName, shell.Severity, shell.Technique));
        // One finding per process: both sockets and the process row are its evidence.
        Assert.Equal(["linux.sockstat:pid=300,fd=3", "linux.pslist:pid=300", "linux.sockstat:pid=300,fd=4"], shell.Evidence.Select(e => $"{e.Plugin}:{e.RowKey}"));
        Assert.DoesNotContain(findings, f => f.RuleId == "CM-LNX-009"); // 443 is a usual port
        // Without pslist (not run, failed), the correlation yields nothing.
        Assert.DoesNotContain(RuleEngine.Evaluate(Shipped, [sockets]), f => f.RuleId == "CM-LNX-010");
    }

    [Fact]
    public void Scanned_tasks_off_the_lists_are_hidden_unless_they_exited()
    {
        static LinuxScannedTask Task(int pid, bool onList, bool? inPidTable, string? exit)
            => new(0xFFFF888001000000UL + (ulong)pid * 0x2000, 0x1000000UL + (ulong)pid * 0x2000, pid, pid, 1, "t" + pid, 0, "x", exit, onList, onList, null, inPidTable);
        var psscan = new RowsReport<LinuxScannedTask>("linux.psscan",
            [Task(10, true, true, null), Task(11, false, true, null), Task(12, false, false, null), Task(13, false, null, null), Task(14, false, false, "EXIT_DEAD")]);
        Assert.Equal([("CM-LNX-005", Severity.High, (long?)11), ("CM-LNX-014", Severity.Medium, 12), ("CM-LNX-014", Severity.Medium, 13)],
            RuleEngine.Evaluate(Shipped, [psscan]).Select(f => (f.RuleId, f.Severity, f.Pid)));
    }

    [Fact]
    public void Predicates_compare_typed_values()
    {
        string rules = """
            { "rules": [
              { "id": "T-1", "title": "t", "severity": "low", "technique": "T1057", "confidence": 0.5, "summary": "{Comm} {Offset}",
                "plugin": "linux.pslist", "where": [ { "column": "Pid", "op": "gt", "value": 100 }, { "column": "Pid", "op": "lt", "value": "0x200" },
                  { "column": "Offset", "op": "mask", "value": "0x1000" }, { "column": "Uid", "op": "notnull" }, { "column": "StartSeconds", "op": "gt", "value": 1.0 },
                  { "column": "Comm", "op": "ne", "value": "skip" } ] }
            ] }
            """;
        var pslist = new RowsReport<LinuxProcess>("linux.pslist",
            [Process(101, "a", false), Process(102, "b", false), Process(103, "skip", false), Process(99, "c", false), Process(600, "d", false), Process(105, "e", false, null)]);
        IReadOnlyList<Finding> findings = RuleEngine.Evaluate(TriageRules.Parse("t.json", rules), [pslist]);
        // Offset = base + pid * 0x1000: bit 0x1000 is set for odd pids.
        Assert.Equal([(long?)101], findings.Select(f => f.Pid));
        Assert.Equal("a 0xFFFF888000065000", findings[0].Summary);
    }

    [Theory]
    [InlineData("""{ "column": "Pidd", "op": "eq", "value": 1 }""", "rules.json: rule USER-1: column 'Pidd' is not a column of linux.pslist (did you mean Pid?)")]
    [InlineData("""{ "column": "Pid", "op": "equals", "value": 1 }""", "rules.json: rule USER-1: column Pid: op 'equals' is not one of eq, ne, in, notin, regex, gt, lt, mask, true, false, null, notnull")]
    [InlineData("""{ "column": "Comm", "op": "true" }""", "rules.json: rule USER-1: column Comm (linux.pslist): op true needs a yes/no column, not String")]
    [InlineData("""{ "column": "Pid", "op": "eq", "value": "one" }""", "rules.json: rule USER-1: column Pid (linux.pslist): \"one\" is not an integer (a number or \"0x...\")")]
    [InlineData("""{ "column": "Comm", "op": "regex", "value": "(" }""", "rules.json: rule USER-1: column Comm (linux.pslist): regex does not parse: ")]
    public void A_bad_user_rule_is_one_line_naming_file_rule_and_column(string predicate, string expected)
    {
        string directory = Directory.CreateDirectory(Path.Combine(_dir.Path, "rules")).FullName;
        string file = Path.Combine(directory, "rules.json");
        File.WriteAllText(file, $$"""
            { "rules": [ { "id": "USER-1", "title": "t", "severity": "high", "technique": "T1059", "confidence": 0.9, "summary": "{Comm}",
                           "plugin": "linux.pslist", "where": [ {{predicate}} ] } ] }
            """);
        RuleException e = Assert.Throws<RuleException>(() => Analyzer.LoadRules(directory));
        Assert.StartsWith(file + expected["rules.json".Length..], e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("\"plugin\": \"linux.pslst\"", "rule USER-2: plugin 'linux.pslst' is not a plugin (did you mean linux.pslist?)")]
    [InlineData("\"plugin\": \"linux.kernel\"", "rule USER-2: plugin linux.kernel has no typed rows rules can read")]
    [InlineData("\"plugin\": \"linux.pslist\", \"summary\": \"{Command}\"", "rule USER-2 summary: column 'Command' is not a column of linux.pslist")]
    [InlineData("\"plugin\": \"linux.pslist\", \"severity\": \"severe\"", "rule USER-2: severity 'severe' is not info, low, medium, high or critical")]
    [InlineData("\"plugin\": \"linux.pslist\", \"join\": { \"plugin\": \"linux.sockstat\", \"on\": \"Inode\" }", "rule USER-2: column 'Inode' is not a column of linux.pslist")]
    [InlineData("\"plugin\": \"linux.pslist\", \"id\": \"CM-LNX-001\"", "rule CM-LNX-001: id already defined in builtin:linux.json")]
    public void Rule_shape_errors_name_the_rule(string fields, string expected)
    {
        string directory = Directory.CreateDirectory(Path.Combine(_dir.Path, "more")).FullName;
        string file = Path.Combine(directory, "x.json");
        // A property given twice: JsonElement.TryGetProperty finds the last one, so the overrides come last.
        string rule = $$"""{ "id": "USER-2", "title": "t", "severity": "high", "technique": "T1059", "confidence": 0.9, "summary": "{Comm}", {{fields}} }""";
        File.WriteAllText(file, $$"""{ "rules": [ {{rule}} ] }""");
        RuleException e = Assert.Throws<RuleException>(() => Analyzer.LoadRules(directory));
        Assert.StartsWith($"{file}: {expected}", e.Message, StringComparison.Ordinal);
    }
}
