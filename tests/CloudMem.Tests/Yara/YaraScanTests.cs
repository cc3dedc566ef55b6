using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Yara;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Yara;

/// <summary>linux.yarascan and yarascan.physical (libyara through P/Invoke) against the fixtures' planted strings and the yara tool.</summary>
public sealed class YaraScanTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cloudmem-yara-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool Required => Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1";

    /// <summary>Writes one rule matching the given strings and checks libyara loads (skips without it, unless CI requires it).</summary>
    private string Rules(string name, params string[] strings)
    {
        var text = new StringBuilder($"rule {name}\n{{\n    strings:\n");
        for (int i = 0; i < strings.Length; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"        $s{i} = \"{strings[i]}\"\n");
        }
        text.Append("    condition:\n        any of them\n}\n");
        string path = Path.Combine(_dir, name + ".yar");
        File.WriteAllText(path, text.ToString());
        try
        {
            YaraRules.Compile(path).Dispose();
        }
        catch (YaraUnavailableException e) when (!Required)
        {
            Skip.If(true, e.Message);
        }
        return path;
    }

    [SkippableFact]
    public void A_string_in_one_process_environment_hits_that_pid_at_an_address_holding_it()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        using JsonDocument truth = Fixture.Truth();
        const string secret = "FAKEfakeFAKEfakeSecretKeyDoNotUse0000000";
        int holder = truth.RootElement.GetProperty("processes").EnumerateArray()
            .Single(p => p.TryGetProperty("environ", out JsonElement env) && env.ValueKind == JsonValueKind.Array && env.EnumerateArray().Any(e => e.GetString() == "AWS_SECRET_ACCESS_KEY=" + secret)).GetProperty("pid").GetInt32();
        string rules = Rules("env_secret", secret);
        LinuxContext context = LinuxContext.Open(memory);

        (LinuxYaraHit hit, AddressSpace space) = SingleHitHolding(context, rules, holder, "[stack]", secret);
        Assert.Equal("env_secret", hit.Rule);
        Assert.Equal("$s0", hit.String);
        Assert.Equal(secret.Length, hit.Length);
        Assert.Equal(secret, hit.Preview);
        Assert.True(space.TryTranslate(hit.VirtualAddress, out Translation t, out _));
        Assert.Equal(t.PhysicalAddress, hit.PhysicalAddress);

        // --pid of another process: no hit.
        Assert.Empty(LinuxYaraScan.Scan(context, rules, new HashSet<int> { 1 }).Rows);
    }

    [SkippableFact]
    public void A_key_planted_in_one_process_heap_hits_that_pid_in_its_heap()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement planted = truth.RootElement.GetProperty("rootkit").GetProperty("secrets");
        int holder = planted.GetProperty("pid").GetInt32();
        string line = planted.GetProperty("pem_private_key").GetString()!.Split('\n')[1]; // the first base64 line: unique to this key
        string rules = Rules("heap_key", line);
        LinuxContext context = LinuxContext.Open(memory);

        SingleHitHolding(context, rules, holder, "[heap]", line);
    }

    /// <summary>The scan hits once, in <paramref name="pid"/>'s <paramref name="mapping"/>, at an address whose bytes are <paramref name="text"/>.</summary>
    private static (LinuxYaraHit Hit, AddressSpace Space) SingleHitHolding(LinuxContext context, string rules, int pid, string mapping, string text)
    {
        LinuxYaraHit hit = Assert.Single(LinuxYaraScan.Scan(context, rules).Rows);
        Assert.Equal(pid, hit.Pid);
        Assert.Equal(mapping, hit.Mapping);
        AddressSpace space = LinuxMalfind.UserSpace(context, pid, default)!;
        byte[] at = new byte[text.Length];
        Assert.Equal(at.Length, space.Read(hit.VirtualAddress, at));
        Assert.Equal(text, Encoding.ASCII.GetString(at));
        return (hit, space);
    }

    [SkippableFact]
    public void The_physical_scan_finds_the_same_offsets_as_the_yara_tool_on_the_raw_image()
    {
        string raw = Fixture.Require("memory.raw");
        string rules = Rules("planted", "FAKEfakeFAKEfakeSecretKeyDoNotUse0000000", "CLOUDMEM-TCP-PAYLOAD-CLIENT-TO-SERVER-8080", "CLOUDMEM-SYSLOG-LINE");
        if (!File.Exists("/usr/bin/yara"))
        {
            Skip.IfNot(Required, "the yara command-line tool is not installed (Debian's yara)");
            throw new InvalidOperationException("the yara command-line tool is required (CLOUDMEM_REQUIRE_FIXTURES=1) but not installed");
        }
        var start = new ProcessStartInfo("/usr/bin/yara") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-s", rules, raw })
        {
            start.ArgumentList.Add(a);
        }
        using var yara = Process.Start(start)!;
        string output = yara.StandardOutput.ReadToEnd();
        yara.WaitForExit();
        Assert.Equal(0, yara.ExitCode);
        // "0x6d6cfc1:$s0: FAKE..." lines after the "planted FILE" line.
        var expected = output.Split('\n').Where(l => l.StartsWith("0x", StringComparison.Ordinal))
            .Select(l => (ulong.Parse(l.AsSpan(2, l.IndexOf(':', StringComparison.Ordinal) - 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture),
                l.Split(':')[1]))
            .Order().ToList();

        using RunMappedMemory memory = CaptureOpener.Open(raw);
        var report = YaraScan.Physical(memory, rules);
        var found = report.Rows.Select(r => (r.PhysicalAddress, r.String)).Order().ToList();
        Assert.True(expected.Count >= 3, output);
        Assert.Equal(expected, found);
    }

    [SkippableFact]
    public void A_match_across_a_chunk_boundary_is_found_once_at_its_address()
    {
        const string marker = "CLOUDMEM-YARA-BOUNDARY-MARKER";
        string rules = Rules("boundary", marker);
        byte[] memory = new byte[YaraScan.Chunk * 2 + 12345];
        ulong[] planted = [100, (ulong)YaraScan.Chunk - 10, (ulong)YaraScan.Chunk + 100, (ulong)(memory.Length - marker.Length)];
        foreach (ulong at in planted)
        {
            Encoding.ASCII.GetBytes(marker).CopyTo(memory, (int)at);
        }
        using YaraRules compiled = YaraRules.Compile(rules);
        var hits = new List<ulong>();
        ulong present = YaraScan.Range(compiled, 0, (ulong)memory.Length, (a, page) =>
        {
            memory.AsSpan((int)a, page.Length).CopyTo(page);
            return page.Length;
        }, (m, address, bytes) =>
        {
            Assert.Equal(marker, Encoding.ASCII.GetString(bytes));
            hits.Add(address);
        }, default);
        Assert.Equal(planted, hits.Order());
        Assert.Equal((ulong)memory.Length, present);
    }

    [SkippableFact]
    public void A_rule_error_is_one_line_naming_the_file_and_line_and_a_directory_compiles_every_rule_file()
    {
        string good = Rules("good", "abc");
        string bad = Path.Combine(_dir, "bad.yar");
        File.WriteAllText(bad, "rule bad\n{\n    strings: $a = \"x\"\n    condition: $b\n}\n");
        var e = Assert.Throws<YaraRuleException>(() => YaraRules.Compile(bad));
        // libyara reports an undefined string at the line where the rule ends (the yara tool says the same).
        Assert.Equal($"{bad}:5: undefined string \"$b\"", e.Message);

        var (exit, _, err) = CliRunner.Run(null, null, "linux.yarascan.physical", Fixture.Require("memory.raw"), "--yara", bad);
        Assert.NotEqual(0, exit);
        Assert.Equal($"cloudmem: error: {bad}:5: undefined string \"$b\"", err.Trim());

        File.Delete(bad);
        File.WriteAllText(Path.Combine(_dir, "second.yara"), "rule second { strings: $a = \"def\" condition: $a }\n");
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "not a rule");
        using YaraRules both = YaraRules.Compile(_dir);
        Assert.Equal([good, Path.Combine(_dir, "second.yara")], both.Files);
        var matches = both.Scan("xxabcxxdefxx"u8);
        Assert.Equal([new YaraMatch("good", "$s0", 2, 3), new YaraMatch("second", "$a", 7, 3)], matches.OrderBy(m => m.Offset));
    }
}
