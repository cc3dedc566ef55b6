using System.Text.Json;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// analyze on the real Linux fixtures: the basic guest gives no finding of high severity (its four medium ones written
/// out below), and every trace the rootkit variant plants (truth.json "rootkit") is a finding with the right ATT&amp;CK id
/// and the evidence row that proves it; secrets stay redacted in every output.
/// </summary>
public sealed class AnalyzeLinuxTests(AnalyzedImages images, ITestOutputHelper output) : IClassFixture<AnalyzedImages>
{
    private static (string, string, long?) Key(Finding f) => (f.RuleId, f.Technique, f.Pid);

    // make-fixture.sh starts these on every variant: memfd-backed and deleted executables (pids 104, 106) and listeners
    // nc :4444 (95) and httpd :8000 (97); each is worth a look, none is high severity.
    private static readonly (string, string, long?)[] s_basicFindings =
    [
        ("CM-LNX-006", "T1620", 104), ("CM-LNX-006", "T1620", 106), ("CM-LNX-009", "T1571", 95), ("CM-LNX-009", "T1571", 97),
        ("CM-LNX-020", "T1070.004", null), // /tmp/fxdeleted: the deleted executable pid 106 runs, still in the page cache
    ];

    [SkippableFact]
    public void Basic_fixture_has_no_high_finding()
    {
        AnalyzedImages.Analyzed analyzed = images.Linux("basic");
        output.WriteLine($"analyze on the basic fixture: {analyzed.Elapsed.TotalSeconds:0.00}s (plugins {analyzed.Report.Runs.Sum(r => r.Elapsed.TotalSeconds):0.00}s)");
        foreach (PluginRun run in analyzed.Report.Runs)
        {
            output.WriteLine($"  {run.Plugin} {run.Elapsed.TotalSeconds:0.00}s {run.Rows} rows {run.Error}");
        }
        Assert.DoesNotContain(analyzed.Report.Findings, f => f.Severity >= Severity.High);
        Assert.Equal(s_basicFindings.Order(), analyzed.Report.Findings.Select(Key).Order());
        Assert.All(analyzed.Report.Runs, r => Assert.Null(r.Error));
        // Every table is one rules can read, with the row type PluginTables names (catches a plugin's row type drifting).
        // (Tables of the engine's plugins: PluginRegistryTests registers a probe plugin into the same process-wide registry.)
        Assert.All(analyzed.Report.Tables.Where(t => t.RowType.Assembly == typeof(Analyzer).Assembly), t => Assert.True(PluginTables.TryGetRowType(t.Title, out Type type) && type == t.RowType, t.Title));
        Assert.Equal("Linux", analyzed.Report.Provenance.Os);
        Assert.StartsWith("Linux version 6.1.0-", analyzed.Report.Provenance.Kernel, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Linux_times_since_boot_are_placed_from_the_kernel_timekeeper()
    {
        AnalyzedImages.Analyzed analyzed = images.Linux("rootkit");
        // The boot precedes the capture, which make-fixture.sh finished (manifest created_utc) within minutes of it.
        using JsonDocument manifest = JsonDocument.Parse(File.ReadAllText(Fixture.Require("manifest.json", "rootkit")));
        DateTimeOffset created = DateTimeOffset.Parse(manifest.RootElement.GetProperty("created_utc").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        string note = Assert.Single(analyzed.Report.Notes, n => n.StartsWith("boot time ", StringComparison.Ordinal));
        DateTimeOffset boot = DateTimeOffset.Parse(note["boot time ".Length..note.IndexOf(' ', "boot time ".Length)], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(boot, created.AddMinutes(-15), created);

        // truth.json rootkit dmesg: "[    7.466167] cloudmem_rk: loading out-of-tree module taints kernel." (the guest's
        // own printk time: seconds since boot, microseconds)
        const string Taint = "cloudmem_rk: loading out-of-tree module taints kernel.";
        using JsonDocument truth = Fixture.Truth("rootkit");
        string line = truth.RootElement.GetProperty("rootkit").GetProperty("dmesg").EnumerateArray().Select(l => l.GetString()!).Single(l => l.EndsWith(Taint, StringComparison.Ordinal));
        decimal seconds = decimal.Parse(line[1..line.IndexOf(']', StringComparison.Ordinal)].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        TimelineEvent taint = Assert.Single(analyzed.Report.Timeline, e => e.Source == "linux.dmesg" && e.Description == Taint);
        Assert.Equal(boot.AddTicks((long)(seconds * TimeSpan.TicksPerSecond)), taint.Time);
        TimelineEvent hidden = Assert.Single(analyzed.Report.Timeline, e => e.Source == "linux.pslist" && e.Pid == 119);
        Assert.Equal("rkhelper pid 119", hidden.Description);
        Assert.Equal(hidden.Time, analyzed.Report.Processes.Single(p => p.Pid == 119).Start);
        Assert.True(analyzed.Report.Timeline.Zip(analyzed.Report.Timeline.Skip(1)).All(p => p.First.Time <= p.Second.Time));
    }

    [SkippableFact]
    public void Rootkit_fixture_traces_are_each_a_finding_with_technique_and_evidence()
    {
        AnalyzedImages.Analyzed analyzed = images.Linux("rootkit");
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        IReadOnlyList<Finding> findings = analyzed.Report.Findings;
        foreach (Finding f in findings)
        {
            output.WriteLine($"{f.Severity} {f.RuleId} {f.Technique} {f.Pid} {f.Summary}");
        }

        // truth.json "rootkit": hidden module cloudmem_rk, kill and getdents64 hooked, netfilter hook, kprobe and keyboard
        // notifier in the module, IDT gate 0xee and ttyS0's receive_buf/receive_buf2 pointing into it, task 113 hidden, secrets
        // (PEM key, AWS key pair, Azure SAS token and connection string) in 119, a socket-filter and a raw-tracepoint eBPF program,
        // a user and a logon key in root's keyring, the deleted dropper script still cached.
        (string, string, long?)[] planted =
        [
            ("CM-LNX-001", "T1014", null), ("CM-LNX-002", "T1014", null), ("CM-LNX-002", "T1014", null),
            ("CM-LNX-003", "T1014", null), ("CM-LNX-004", "T1014", null), ("CM-LNX-005", "T1014", 113),
            ("CM-LNX-011", "T1552", 119), ("CM-LNX-011", "T1552", 119), ("CM-LNX-011", "T1552", 119), ("CM-LNX-011", "T1552", 119),
            ("CM-LNX-015", "T1056.001", null), ("CM-LNX-018", "T1205.002", null), ("CM-LNX-020", "T1070.004", null),
            ("CM-LNX-016", "T1014", null), ("CM-LNX-017", "T1056.001", null), ("CM-LNX-017", "T1056.001", null),
            ("CM-LNX-019", "T1014", null), ("CM-LNX-021", "T1552", null), ("CM-LNX-021", "T1552", null),
        ];
        Assert.Equal(planted.Concat(s_basicFindings).Order(), findings.Select(Key).Order());
        Assert.Equal(Severity.Critical, findings[0].Severity);

        LinuxModuleView module = Assert.IsType<LinuxModuleView>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-001").Evidence).Row);
        Assert.Equal(("cloudmem_rk", Hex(rk.GetProperty("module").GetProperty("base"))), (module.Name, module.Base));

        var hooks = findings.Where(f => f.RuleId == "CM-LNX-002").Select(f => Assert.IsType<LinuxSyscallSlot>(Assert.Single(f.Evidence).Row))
            .Select(s => (s.Index, s.Name, s.Handler, s.OriginalAddress)).OrderBy(s => s.Index);
        Assert.Equal(rk.GetProperty("hooked_syscalls").EnumerateArray()
            .Select(h => (h.GetProperty("nr").GetInt32(), (string?)h.GetProperty("name").GetString(), Hex(h.GetProperty("hook")), (ulong?)Hex(h.GetProperty("original")))), hooks);

        LinuxNetfilterHook hook = Assert.IsType<LinuxNetfilterHook>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-003").Evidence).Row);
        Assert.Equal((Hex(rk.GetProperty("netfilter").GetProperty("hook")), "cloudmem_rk"), (hook.Handler, hook.Module));
        LinuxKprobe probe = Assert.IsType<LinuxKprobe>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-004").Evidence).Row);
        Assert.Equal((Hex(rk.GetProperty("kprobe").GetProperty("kprobe")), Hex(rk.GetProperty("kprobe").GetProperty("pre_handler"))), (probe.Kprobe, probe.PreHandler));
        LinuxScannedTask task = Assert.IsType<LinuxScannedTask>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-005").Evidence).Row);
        Assert.Equal((113, "sleep", Hex(rk.GetProperty("hidden_process").GetProperty("task"))), (task.Pid, task.Comm, task.Offset));
        Assert.Contains(analyzed.Report.Processes, p => p is { Pid: 113, Hidden: true });
        Assert.Equal(["AwsAccessKey", "AzureConnectionString", "AzureSasToken", "PemPrivateKey"], findings.Where(f => f.RuleId == "CM-LNX-011")
            .Select(f => Assert.IsType<LinuxSecret>(Assert.Single(f.Evidence).Row).Kind.ToString()).Order());

        LinuxIdtEntry gate = Assert.IsType<LinuxIdtEntry>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-016").Evidence).Row);
        Assert.Equal((rk.GetProperty("hooked_idt").GetProperty("vector").GetInt32(), Hex(rk.GetProperty("hooked_idt").GetProperty("hook")), "cloudmem_rk"),
            (gate.Vector, gate.Handler, gate.Module));
        Assert.Equal(rk.GetProperty("hooked_tty").EnumerateArray().Select(h => (h.GetProperty("function").GetString(), Hex(h.GetProperty("hook")))).Order(),
            findings.Where(f => f.RuleId == "CM-LNX-017").Select(f => Assert.IsType<LinuxTtyHandler>(Assert.Single(f.Evidence).Row))
                .Select(r => ((string?)r.Function, r.Handler)).Order());
        Assert.Equal("cloudmem_rk_rtp", Assert.IsType<LinuxBpfProgram>(Assert.Single(findings.Single(f => f.RuleId == "CM-LNX-019").Evidence).Row).Name);
        Assert.Equal(rk.GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("serial").GetInt32()).Order(),
            findings.Where(f => f.RuleId == "CM-LNX-021").Select(f => Assert.IsType<LinuxKey>(Assert.Single(f.Evidence).Row).Serial).Order());
    }

    [SkippableFact]
    public void Secrets_stay_redacted_in_findings_jsonl_and_case_sqlite()
    {
        AnalyzedImages.Analyzed analyzed = images.Linux("rootkit");
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement secrets = truth.RootElement.GetProperty("rootkit").GetProperty("secrets");
        string secret = secrets.GetProperty("aws_secret_access_key").GetString()!;
        string keyLine = secrets.GetProperty("pem_private_key").GetString()!.Split('\n')[2];
        string jsonl = File.ReadAllText(Path.Combine(analyzed.CaseDirectory, "findings.jsonl"));
        Assert.Contains("rkhelper", jsonl, StringComparison.Ordinal);
        byte[] database = File.ReadAllBytes(Path.Combine(analyzed.CaseDirectory, "case.sqlite"));
        string[] keyPayloads = [.. truth.RootElement.GetProperty("rootkit").GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("payload").GetString()![4..])];
        Assert.Equal(2, keyPayloads.Length);
        foreach (string needle in keyPayloads.Append(secret).Append(keyLine))
        {
            Assert.DoesNotContain(needle, jsonl, StringComparison.Ordinal);
            Assert.Equal(-1, database.AsSpan().IndexOf(System.Text.Encoding.UTF8.GetBytes(needle)));
        }
    }

    [SkippableFact]
    public void Case_database_has_typed_plugin_tables_findings_and_provenance()
    {
        AnalyzedImages.Analyzed analyzed = images.Linux("rootkit");
        using var connection = new SqliteConnection($"Data Source={Path.Combine(analyzed.CaseDirectory, "case.sqlite")};Mode=ReadOnly;Pooling=False");
        connection.Open();
        // Kernel addresses above 2^63 are stored as their two's-complement INTEGER; printf('%X') prints them back.
        using JsonDocument truth = Fixture.Truth("rootkit");
        ulong moduleBase = Hex(truth.RootElement.GetProperty("rootkit").GetProperty("module").GetProperty("base"));
        Assert.Equal($"{moduleBase:X}|integer|1|text", Scalar(connection,
            "SELECT printf('%X', Base) || '|' || typeof(Base) || '|' || Hidden || '|' || typeof(Finding) FROM linux_hidden_modules WHERE Name = 'cloudmem_rk'"));
        LinuxModuleView hidden = Assert.IsType<LinuxModuleView>(Assert.Single(analyzed.Report.Findings.Single(f => f.RuleId == "CM-LNX-001").Evidence).Row);
        Assert.Equal($"name=cloudmem_rk,offset=0x{hidden.Offset:X}", Scalar(connection,
            "SELECT e.row_key FROM evidence e JOIN findings f ON f.id = e.finding_id WHERE f.rule_id = 'CM-LNX-001'"));
        Assert.Equal("1", Scalar(connection, "SELECT count(*) FROM linux_hidden_modules h JOIN evidence e ON e.row_key = h.row_key AND e.table_name = 'linux_hidden_modules'"));
        Assert.Equal("Linux", Scalar(connection, "SELECT value FROM provenance WHERE name = 'os'"));
        Assert.Equal(analyzed.Report.Runs.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), Scalar(connection, "SELECT count(*) FROM runs"));
        Assert.Equal("critical", Scalar(connection, "SELECT lower(severity) FROM findings WHERE id = 1"));
    }

    [SkippableFact]
    public void Yara_rules_run_only_when_given_and_a_hit_is_a_finding_on_the_holding_pid()
    {
        Assert.DoesNotContain(images.Linux("rootkit").Report.Runs, r => r.Plugin.Contains("yara", StringComparison.Ordinal));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement secrets = truth.RootElement.GetProperty("rootkit").GetProperty("secrets");
        string keyId = secrets.GetProperty("aws_access_key_id").GetString()!;
        string rules = Path.Combine(images.Root, "keyid.yar");
        File.WriteAllText(rules, $"rule planted_key_id\n{{\n    strings:\n        $a = \"{keyId}\"\n    condition:\n        $a\n}}\n");
        try
        {
            CloudMem.Engine.Yara.YaraRules.Compile(rules).Dispose();
        }
        catch (CloudMem.Engine.Yara.YaraUnavailableException e) when (Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") != "1")
        {
            Skip.If(true, e.Message);
        }
        string image = Fixture.Require("memory.raw", "rootkit");
        using CloudMem.VmStateParsers.RunMappedMemory memory = CloudMem.VmStateParsers.CaptureOpener.Open(image);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions { ImagePath = image, YaraRules = rules });

        Assert.Null(report.Runs.Single(r => r.Plugin == "linux.yarascan").Error);
        Assert.Null(report.Runs.Single(r => r.Plugin == "linux.yarascan.physical").Error);
        // truth.json: the key pair is in rkhelper's (pid 119) heap.
        Finding hit = Assert.Single(report.Findings, f => f.RuleId == "CM-LNX-012");
        Assert.Equal((119L, "rkhelper", Severity.High), (hit.Pid!.Value, hit.ProcessName, hit.Severity));
        Assert.All(hit.Evidence, e => Assert.Equal("[heap]", Assert.IsType<LinuxYaraHit>(e.Row).Mapping));
        Assert.StartsWith("YARA rule planted_key_id matched pid 119 (rkhelper) at 0x", hit.Summary, StringComparison.Ordinal);
        Assert.Single(report.Findings, f => f.RuleId == "CM-LNX-013");
    }

    private static string Scalar(SqliteConnection connection, string sql)
    {
        using SqliteCommand command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToString(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) ?? "";
    }

    private static ulong Hex(JsonElement e) => Convert.ToUInt64(e.GetString()![2..], 16);
}
