using System.Diagnostics;
using System.Text;
using System.Text.Json;
using CloudMem.Tests.Analysis;
using CloudMem.Tests.Connectors.Azure;
using CloudMem.Tests.Support;
using Xunit.Abstractions;

namespace CloudMem.Tests.Fleet;

/// <summary>
/// cloudmem fleet analyze as a user runs it: 12 real captures (the Linux fixtures in five formats, the rootkit variant in
/// three, Windows builder images with and without the attack scenario) analysed by 3 worker processes on a Durable Task
/// hub in azurite, one worker killed with SIGKILL while it analyses; every capture ends with exactly one complete case
/// directory, analysed once (twice started only for the killed one), with the planted findings where they were planted.
/// </summary>
public sealed class FleetAnalyzeTests(AnalyzedImages images, DurableAzurite azurite, ITestOutputHelper output)
    : IClassFixture<AnalyzedImages>, IClassFixture<DurableAzurite>
{
    // Linux fixtures: (variant, file) -> capture name in the fleet directory.
    private static readonly (string Variant, string File, string Name)[] s_linux =
    [
        ("basic", "memory.raw", "web01.raw"), ("basic", "memory.lime", "web02.lime"), ("basic", "memory.kdump-zlib", "web03.kdump"),
        ("basic", "memory.avml", "web04.avml"), ("basic", "memory.kdump-zstd.flat", "web05.kdump-flat"),
        ("rootkit", "memory.raw", "db01.raw"), ("rootkit", "memory.lime", "db02.lime"), ("rootkit", "memory.kdump-lzo", "db03.kdump"),
    ];

    // Windows builder images: (scenario, kernel) -> capture name.
    private static readonly (string Scenario, string Guid, string Name)[] s_windows =
    [
        ("attack", WindowsSymbols.Win10, "dc01-win10.raw"), ("attack", WindowsSymbols.Win7, "dc02-win7.raw"),
        ("clean", WindowsSymbols.Win10, "ws01-win10.raw"), ("clean", WindowsSymbols.Win11, "ws02-win11.raw"),
    ];

    private static readonly string[] s_planted = ["db01.raw", "db02.lime", "db03.kdump", "dc01-win10.raw", "dc02-win7.raw"];

    [SkippableFact]
    public void Twelve_captures_three_workers_one_killed_mid_analysis_each_capture_analysed_exactly_once()
    {
        using var dir = new TempDir();
        string captures = Path.Combine(dir.Path, "captures");
        string symbols = Captures(captures);
        string caseDir = Path.Combine(dir.Path, "IR-7.fleet");
        var clock = Stopwatch.StartNew();
        using var fleet = new CliProcess(["fleet", "analyze", captures, "--out", caseDir, "--workers", "3", "--storage", azurite.Host.ConnectionString,
            "--task-hub", "fleet" + Guid.NewGuid().ToString("N")[..8], "--recovery-seconds", "15", "--symbols", symbols]);

        // Kill one worker while it analyses a Linux capture: the first attempt marker of a capture still unfinished 2 s later.
        (int Pid, string Id, bool CommittedBeforeKill) killed = KillOneWorkerMidAnalysis(caseDir, fleet);
        output.WriteLine($"killed worker pid {killed.Pid} while it analysed {killed.Id} at {clock.Elapsed.TotalSeconds:0}s");

        Assert.True(fleet.WaitForExit(TimeSpan.FromMinutes(9)), "fleet analyze did not finish in 9 minutes:\n" + fleet.Output + Logs(caseDir));
        output.WriteLine(fleet.Output);
        output.WriteLine($"fleet analyze took {clock.Elapsed.TotalSeconds:0}s");
        Assert.True(fleet.ExitCode == 0, $"exit {fleet.ExitCode}\n{fleet.Output}{Logs(caseDir)}");
        Assert.Contains($"(pid {killed.Pid}) exited", fleet.Output, StringComparison.Ordinal);

        string[] names = [.. s_linux.Select(l => l.Name), .. s_windows.Select(w => w.Name)];
        // captures/ holds exactly one complete case directory per capture, and nothing else.
        Assert.Equal(names.Order(StringComparer.Ordinal), Directory.GetFileSystemEntries(Path.Combine(caseDir, "captures")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (string name in names)
        {
            string capture = Path.Combine(caseDir, "captures", name);
            Assert.Equal(["case.sqlite", "findings.jsonl", "report.html", "report.md", "timeline.body"],
                Directory.GetFiles(capture).Select(Path.GetFileName).Where(f => f is "case.sqlite" or "findings.jsonl" or "report.html" or "report.md" or "timeline.body").Order(StringComparer.Ordinal));
            Assert.True(new FileInfo(Path.Combine(capture, "case.sqlite")).Length > 0);
        }
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(caseDir, ".fleet", "tmp")));

        // Analyses started per capture (one marker each): one everywhere, two for the capture whose worker was killed.
        using JsonDocument fleetJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "fleet.json")));
        var entries = fleetJson.RootElement.GetProperty("captures").EnumerateArray().ToDictionary(c => c.GetProperty("id").GetString()!);
        Assert.Equal(names.Order(StringComparer.Ordinal), entries.Keys.Order(StringComparer.Ordinal));
        foreach (string name in names)
        {
            int expected = name == killed.Id && !killed.CommittedBeforeKill ? 2 : 1;
            int markers = Directory.GetFiles(Path.Combine(caseDir, ".fleet", "attempts", name), "*.started").Length;
            Assert.True(markers == expected, $"{name}: {markers} analyses started, expected {expected}\n{fleet.Output}");
            JsonElement entry = entries[name];
            Assert.Equal("done", entry.GetProperty("status").GetString());
            Assert.Equal(expected, entry.GetProperty("attempts").GetInt32());
            Assert.False(entry.TryGetProperty("error", out _));
            if (name == killed.Id && !killed.CommittedBeforeKill)
            {
                // The interrupted capture was finished by another worker.
                Assert.NotEqual($"{Environment.MachineName}:{killed.Pid}", entry.GetProperty("worker").GetString());
            }
        }
        // The work was shared: the two surviving workers both analysed captures.
        Assert.True(entries.Values.Select(e => e.GetProperty("worker").GetString()).Where(w => w != $"{Environment.MachineName}:{killed.Pid}").Distinct().Count() >= 2, fleet.Output);

        // The planted captures have their critical findings; the clean ones have none of them.
        foreach (string name in names)
        {
            IReadOnlyList<(string Rule, string Severity)> findings = Findings(Path.Combine(caseDir, "captures", name, "findings.jsonl"));
            if (name.StartsWith("db", StringComparison.Ordinal))
            {
                // truth.json "rootkit": cloudmem_rk hidden, sys_call_table hooked, netfilter hook, kprobe, keyboard notifier.
                foreach (string rule in new[] { "CM-LNX-001", "CM-LNX-002", "CM-LNX-003", "CM-LNX-004", "CM-LNX-015" })
                {
                    Assert.Contains((rule, "critical"), findings);
                }
            }
            else if (name.StartsWith("dc", StringComparison.Ordinal))
            {
                // scenarios/attack.json: hollowed svchosts 844 and 1288 (CM-WIN-005), unlinked rootkit.sys (CM-WIN-008).
                Assert.Equal(2, findings.Count(f => f == ("CM-WIN-005", "critical")));
                Assert.Contains(("CM-WIN-008", "critical"), findings);
            }
            else
            {
                Assert.DoesNotContain(findings, f => f.Severity is "critical" or "high");
            }
            Assert.Equal(s_planted.Contains(name), findings.Any(f => f.Severity == "critical"));
        }
        Assert.Contains("12 done, 0 failed", fleet.Output, StringComparison.Ordinal);

        // One place to ask: who-has over the fleet's Parquet files names exactly the captures with the planted traces.
        string[] rootkit = [.. names.Where(n => n.StartsWith("db", StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
        string[] attack = [.. names.Where(n => n.StartsWith("dc", StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
        Assert.Equal(rootkit, WhoHas(caseDir, "--finding", "CM-LNX-002"));   // hooked system calls
        Assert.Equal(rootkit, WhoHas(caseDir, "--process", "rkhelper"));      // the rootkit fixture's helper process
        Assert.Equal(attack, WhoHas(caseDir, "--finding", "CM-WIN-008"));     // the unlinked driver
        Assert.Empty(WhoHas(caseDir, "--connection", "198.51.100.250:1"));   // in no capture: exit 1, no rows
    }

    /// <summary>The captures <c>fleet who-has</c> names (exit 0), or none (exit 1).</summary>
    private static string[] WhoHas(string caseDir, params string[] question)
    {
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, ["fleet", "who-has", caseDir, .. question, "-o", "csv"]);
        Assert.True(exit is 0 or 1, $"who-has {string.Join(' ', question)}: exit {exit}: {stderr}");
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0)
        {
            return [];
        }
        int column = Array.IndexOf(lines[0].Split(','), "Capture");
        Assert.True(column >= 0, $"no Capture column in: {lines[0]}");
        return [.. lines.Skip(1).Select(line => line.Split(',')[column].Trim('"')).Order(StringComparer.Ordinal)];
    }

    [SkippableFact]
    public void Without_storage_it_starts_its_own_azurite_and_a_capture_that_fails_is_recorded_with_its_reason_and_a_nonzero_exit()
    {
        Emulators.Require(Path.Combine("azurite", "node_modules", ".bin", "azurite"));
        using var dir = new TempDir();
        string captures = Path.Combine(dir.Path, "captures");
        Directory.CreateDirectory(captures);
        (string raw, string symbols) = images.WindowsBuilt("clean");
        File.CreateSymbolicLink(Path.Combine(captures, "ws01.raw"), raw);
        File.WriteAllBytes(Path.Combine(captures, "zeros.raw"), new byte[1 << 20]);   // a raw "capture" with no kernel in it
        File.WriteAllText(Path.Combine(captures, "notes.txt"), "not a capture");
        string caseDir = Path.Combine(dir.Path, "case");
        using var fleet = new CliProcess(["fleet", "analyze", captures, "--out", caseDir, "--workers", "1", "--symbols", symbols],
            new Dictionary<string, string> { ["CLOUDMEM_EMULATORS"] = Emulators.Root, ["CLOUDMEM_FLEET_STORAGE"] = "" });
        Assert.True(fleet.WaitForExit(TimeSpan.FromMinutes(4)), fleet.Output + Logs(caseDir));
        output.WriteLine(fleet.Output);

        Assert.Equal(2, fleet.ExitCode);
        Assert.Contains("(local azurite)", fleet.Output, StringComparison.Ordinal);
        Assert.Contains("1 done, 1 failed", fleet.Output, StringComparison.Ordinal);
        Assert.Equal(["ws01.raw"], Directory.GetDirectories(Path.Combine(caseDir, "captures")).Select(Path.GetFileName));
        using JsonDocument fleetJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "fleet.json")));
        JsonElement zeros = fleetJson.RootElement.GetProperty("captures").EnumerateArray().Single(c => c.GetProperty("id").GetString() == "zeros.raw");
        Assert.Equal("failed", zeros.GetProperty("status").GetString());
        string error = zeros.GetProperty("error").GetString()!;
        Assert.DoesNotContain('\n', error);
        Assert.Contains("zeros.raw", error, StringComparison.Ordinal);
        Assert.Contains("no Linux kernel", error, StringComparison.Ordinal);
        Assert.Equal(2, fleetJson.RootElement.GetProperty("captures").GetArrayLength());   // notes.txt is no capture
    }

    /// <summary>Lays the 12 captures out in <paramref name="directory"/> (symbolic links to the cached fixtures, Windows images built); returns the Windows symbols root.</summary>
    private string Captures(string directory)
    {
        Directory.CreateDirectory(directory);
        foreach ((string variant, string file, string name) in s_linux)
        {
            File.CreateSymbolicLink(Path.Combine(directory, name), Fixture.Require(file, variant));
        }
        string root = "";
        foreach ((string scenario, string guid, string name) in s_windows)
        {
            (string raw, root) = images.WindowsBuilt(scenario, guid);
            File.CreateSymbolicLink(Path.Combine(directory, name), raw);
        }
        return root;
    }

    private static (int Pid, string Id, bool CommittedBeforeKill) KillOneWorkerMidAnalysis(string caseDir, CliProcess fleet)
    {
        var clock = Stopwatch.StartNew();
        string attempts = Path.Combine(caseDir, ".fleet", "attempts");
        while (clock.Elapsed < TimeSpan.FromMinutes(5))
        {
            Assert.False(fleet.HasExited, "fleet analyze exited before any worker could be killed:\n" + fleet.Output);
            foreach (string marker in Directory.Exists(attempts) ? Directory.GetFiles(attempts, "*.started", SearchOption.AllDirectories) : [])
            {
                string id = Path.GetFileName(Path.GetDirectoryName(marker)!);
                bool linux = s_linux.Any(l => l.Name == id);
                if (!linux || DateTime.UtcNow - File.GetLastWriteTimeUtc(marker) < TimeSpan.FromSeconds(2) || Directory.Exists(Path.Combine(caseDir, "captures", id)))
                {
                    continue;
                }
                using JsonDocument started = JsonDocument.Parse(File.ReadAllText(marker));
                int pid = started.RootElement.GetProperty("pid").GetInt32();
                // Only a worker of this fleet run: its command line says so.
                string cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
                Assert.Contains("fleet worker", cmdline, StringComparison.Ordinal);
                using (var process = Process.GetProcessById(pid))
                {
                    process.Kill();
                }
                while (Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] != "Z")
                {
                    Thread.Sleep(20);
                }
                return (pid, id, Directory.Exists(Path.Combine(caseDir, "captures", id)));
            }
            Thread.Sleep(100);
        }
        throw new Xunit.Sdk.XunitException("no worker started a Linux capture within 5 minutes:\n" + fleet.Output);
    }

    private static List<(string, string)> Findings(string jsonl)
        => File.ReadLines(jsonl).Select(line =>
        {
            using JsonDocument d = JsonDocument.Parse(line);
            return (d.RootElement.GetProperty("ruleId").GetString()!, d.RootElement.GetProperty("severity").GetString()!);
        }).ToList();

    private static string Logs(string caseDir)
    {
        var text = new StringBuilder();
        foreach (string log in Directory.Exists(Path.Combine(caseDir, ".fleet")) ? Directory.GetFiles(Path.Combine(caseDir, ".fleet"), "worker-*.log") : [])
        {
            text.AppendLine($"--- {Path.GetFileName(log)}").AppendLine(string.Join('\n', File.ReadLines(log).TakeLast(30)));
        }
        return text.ToString();
    }
}

/// <summary>cloudmem as a child process whose output is collected as it runs (killed with its children on dispose).</summary>
internal sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    public CliProcess(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(CliRunner.CliDll);
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        foreach ((string key, string value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            return false;
        }
        _process.WaitForExit();   // the output is read to its end
        return true;
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        _process.Dispose();
    }
}
