using System.Text.Json;
using CloudMem.Engine.Analysis;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// cloudmem fleet query / who-has as a user runs them (the real CLI as a child process) over the fleet case of
/// <see cref="FleetCases"/>: which captures have a finding, a connection, a process, a YARA hit, with the expected
/// captures written out here from the fixtures' truth and the scenario files; SQL with GROUP BY in every output format;
/// one-line errors with exit 2; exit 1 when no capture has what was asked.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetQueryTests(FleetCases fleet)
{
    private (int Exit, string Out, string Err) Cli(params string[] args)
    {
        _ = fleet.Reports;
        return CliRunner.Run(null, null, ["fleet", .. args]);
    }

    /// <summary>who-has as JSON: (capture, matched, count, example pid, example process) per row.</summary>
    private List<(string Capture, string Matched, long Count, long? Pid, string? Process)> WhoHas(params string[] question)
    {
        (int exit, string stdout, string stderr) = Cli(["who-has", fleet.Case, .. question, "-o", "json"]);
        Assert.True(exit is 0 or 1, stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        var rows = json.RootElement.GetProperty("rows").EnumerateArray().Select(r => (r.GetProperty("capture").GetString()!, r.GetProperty("matched").GetString()!,
            r.GetProperty("count").GetInt64(), r.GetProperty("examplePid").ValueKind == JsonValueKind.Null ? (long?)null : r.GetProperty("examplePid").GetInt64(),
            r.GetProperty("exampleProcess").GetString())).ToList();
        Assert.Equal(rows.Count > 0 ? 0 : 1, exit);
        return rows;
    }

    [SkippableFact]
    public void Who_has_a_finding_names_exactly_the_captures_where_the_rule_fired()
    {
        // truth.json (rootkit): kill and getdents64 hooked by the hidden module; the basic capture has no hook.
        Assert.Equal([("linux-rootkit", "CM-LNX-002: Hooked system call", 2L, (long?)null, (string?)null)], WhoHas("--finding", "CM-LNX-002"));
        // scenarios/attack.json: hollowed svchost 844 and 1288; network.json is the attack plus network traces; clean has neither.
        Assert.Equal([("win-attack", "CM-WIN-005: Hollowed process", 2L, (long?)844, "svchost.exe"), ("win-network", "CM-WIN-005: Hollowed process", 2L, 844, "svchost.exe")],
            WhoHas("--finding", "cm-win-005"));
        // network.json only: powershell 6044 and the unlinked rundll32 7312 with sockets.
        Assert.Equal([("win-network", 2L, (long?)6044)], WhoHas("--finding", "CM-WIN-009").Select(r => (r.Capture, r.Count, r.Pid)));
        // WINWORD 5120 starting powershell 6044: in attack and in network (typical plus the network traces), not in clean.
        Assert.Equal(["win-attack", "win-network"], WhoHas("--finding", "CM-WIN-001").Select(r => r.Capture));
        // The same answer as the reports themselves give.
        foreach (string rule in new[] { "CM-LNX-002", "CM-WIN-005", "CM-WIN-001", "CM-WIN-009" })
        {
            Assert.Equal(fleet.Reports.Where(kv => kv.Value.Findings.Any(f => f.RuleId == rule)).Select(kv => kv.Key).Order(StringComparer.Ordinal),
                WhoHas("--finding", rule).Select(r => r.Capture));
        }
    }

    [SkippableFact]
    public void Who_has_a_connection_finds_the_reverse_shell_and_the_nc_listeners()
    {
        // network.json: powershell 6044 connects from 10.0.2.15:49733 to 203.0.113.7:4444.
        var shell = Assert.Single(WhoHas("--connection", "203.0.113.7:4444"));
        Assert.Equal(("win-network", 6044L, "powershell.exe"), (shell.Capture, shell.Pid!.Value, shell.Process));
        Assert.Contains("-> 203.0.113.7:4444", shell.Matched, StringComparison.Ordinal);
        Assert.Equal(["win-network"], WhoHas("--connection", "203.0.113.7").Select(r => r.Capture));
        // truth.json (basic and rootkit): nc 95 listens on [::]:4444; the reverse shell's remote port is 4444 too.
        var port = WhoHas("--connection", ":4444");
        Assert.Equal(["linux-basic", "linux-rootkit", "win-network"], port.Select(r => r.Capture));
        Assert.Equal([(95L, "nc"), (95L, "nc")], port.Take(2).Select(r => (r.Pid!.Value, r.Process!)));
        Assert.Equal("TCPv6 [::]:4444", port[0].Matched);
        Assert.Equal(["linux-basic", "linux-rootkit"], WhoHas("--connection", "[::]:4444").Select(r => r.Capture));
        Assert.Empty(WhoHas("--connection", "198.51.100.99:4444"));
    }

    [SkippableFact]
    public void Who_has_a_process_matches_names_case_insensitively_with_wildcards()
    {
        // truth.json: nc 95 (listener) and 109 (client) in both Linux captures.
        Assert.Equal([("linux-basic", "nc", 2L, (long?)95, (string?)"nc"), ("linux-rootkit", "nc", 2L, 95, "nc")], WhoHas("--process", "nc"));
        // powershell 6044 is in attack and network; clean has no powershell.
        Assert.Equal(["win-attack", "win-network"], WhoHas("--process", "POWERSHELL*").Select(r => r.Capture));
        // The rootkit's helpers: 119 holds the planted secrets, 120 the eBPF program (truth.json).
        Assert.Equal([("linux-rootkit", "rkhelper", 2L, (long?)119, (string?)"rkhelper")], WhoHas("--process", "rkhelp?r"));
        Assert.Empty(WhoHas("--process", "no_such_process"));
    }

    [SkippableFact]
    public void Who_has_a_yara_rule_names_the_capture_whose_process_holds_the_planted_string()
    {
        _ = fleet.Reports;
        Skip.IfNot(fleet.YaraRan, "libyara9 is not installed (tests/run.sh installs it)");
        var rows = WhoHas("--yara", "planted_key_id");
        (string capture, string matched, long count, long? pid, string? process) = Assert.Single(rows);
        // truth.json: the key id is in rkhelper's (pid 119) heap; the physical scan finds it too (no pid).
        Assert.Equal(("linux-rootkit", "planted_key_id", 119L, "rkhelper"), (capture, matched, pid!.Value, process));
        Assert.True(count >= 2, $"process and physical hits expected, got {count}");
        Assert.Empty(WhoHas("--yara", "no_such_rule"));
        (int exit, string stdout, _) = Cli("query", fleet.Case, "SELECT DISTINCT plugin FROM yara ORDER BY plugin", "-o", "csv");
        Assert.Equal(0, exit);
        Assert.Equal("table,plugin\nquery,linux.yarascan\nquery,linux.yarascan.physical\n", stdout.ReplaceLineEndings("\n"));
    }

    [SkippableFact]
    public void Query_with_group_by_prints_tables_csv_and_json()
    {
        const string Sql = "SELECT capture_id, count(*) AS findings, max(severity_rank) AS worst FROM findings GROUP BY capture_id ORDER BY capture_id";
        (int exit, string stdout, string stderr) = Cli("query", fleet.Case, Sql, "-o", "csv");
        Assert.True(exit == 0, stderr);
        // One row per capture with findings (clean has none), counts equal to the reports'.
        string[] expected = [.. fleet.Reports.Where(kv => kv.Value.Findings.Count > 0).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => $"query,{kv.Key},{kv.Value.Findings.Count},{(int)kv.Value.Findings.Max(f => f.Severity)}")];
        Assert.Equal(["table,capture_id,findings,worst", .. expected], stdout.TrimEnd().ReplaceLineEndings("\n").Split('\n'));
        Assert.DoesNotContain("win-clean", stdout, StringComparison.Ordinal);
        Assert.Equal(4, expected.Length);

        (exit, stdout, _) = Cli("query", fleet.Case, Sql);
        Assert.Equal(0, exit);
        Assert.Matches(@"^query\n  capture_id +findings +worst\n  -+ +-+ +-+\n  linux-basic +\d+ +\d\n", stdout.ReplaceLineEndings("\n"));

        (exit, stdout, _) = Cli("query", fleet.Case, "SELECT capture_id, analysed_at, bytes FROM captures WHERE capture_id = 'win-clean'", "-o", "json");
        Assert.Equal(0, exit);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement row = json.RootElement.GetProperty("rows").EnumerateArray().Single();
        Assert.Equal(fleet.Reports["win-clean"].Provenance.Bytes, row.GetProperty("bytes").GetInt64());
        Assert.EndsWith("Z", row.GetProperty("analysed_at").GetString(), StringComparison.Ordinal);

        // One analyze case directory (no captures/) reads the same way.
        (exit, stdout, _) = Cli("query", fleet.CaptureDirectory("linux-rootkit"), "SELECT count(*) AS n FROM processes WHERE hidden", "-o", "csv");
        Assert.Equal(0, exit);
        Assert.Equal($"table,n\nquery,{fleet.Reports["linux-rootkit"].Processes.Count(p => p.Hidden)}\n", stdout.ReplaceLineEndings("\n"));
    }

    [SkippableFact]
    public void Bad_sql_and_a_directory_without_parquet_are_one_line_and_exit_2()
    {
        (int exit, string stdout, string stderr) = Cli("query", fleet.Case, "SELEC capture_id FROM findings");
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.TrimEnd().Split('\n'));
        Assert.StartsWith($"cloudmem: error: {fleet.Case}: Parser Error: syntax error at or near \"SELEC\"", line, StringComparison.Ordinal);

        (exit, _, stderr) = Cli("query", fleet.Case, "SELECT no_such_column FROM findings");
        Assert.Equal(2, exit);
        Assert.Contains("no_such_column", Assert.Single(stderr.TrimEnd().Split('\n')), StringComparison.Ordinal);

        string empty = Directory.CreateTempSubdirectory("cloudmem-fleet-").FullName;
        try
        {
            (exit, stdout, stderr) = Cli("who-has", empty, "--process", "nc");
            Assert.Equal(2, exit);
            Assert.Equal("", stdout);
            Assert.StartsWith($"cloudmem: error: {empty}: no case Parquet files (captures.parquet,", Assert.Single(stderr.TrimEnd().Split('\n')), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(empty, true);
        }

        (exit, _, stderr) = Cli("who-has", fleet.Case, "--process", "nc", "--finding", "CM-LNX-002");
        Assert.Equal(2, exit);
        Assert.Contains("exactly one of --yara, --connection, --process, --finding", Assert.Single(stderr.TrimEnd().Split('\n')), StringComparison.Ordinal);
        (exit, _, stderr) = Cli("who-has", fleet.Case, "--connection", "10.0.0.1:99999");
        Assert.Equal(2, exit);
        Assert.Contains("the port must be 0 to 65535", Assert.Single(stderr.TrimEnd().Split('\n')), StringComparison.Ordinal);
    }

    [Fact]
    public void Help_of_both_commands_prints_their_options_and_examples()
    {
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "fleet", "who-has", "--help");
        Assert.True(exit == 0, stderr);
        Assert.Contains("[IPv6]:PORT", stdout, StringComparison.Ordinal);
        Assert.Contains("cloudmem fleet who-has IR-42.case --connection 203.0.113.7:4444", stdout, StringComparison.Ordinal);
        (exit, stdout, stderr) = CliRunner.Run(null, null, "fleet", "query", "--help");
        Assert.True(exit == 0, stderr);
        Assert.Contains("<SQL>", stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("203.0.113.7:4444", "203.0.113.7", 4444L)]
    [InlineData("203.0.113.7", "203.0.113.7", null)]
    [InlineData(":4444", null, 4444L)]
    [InlineData("*:53", null, 53L)]
    [InlineData("[::1]:22", "::1", 22L)]
    [InlineData("fe80::1", "fe80::1", null)]
    [InlineData("[::]", "::", null)]
    public void Endpoint_forms_are_read(string text, string? address, long? port)
        => Assert.Equal((address, port), FleetQuestions.Endpoint(text));
}
