using System.Text.Json;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Network;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.netscan and windows.netstat on the network scenario laid out on Windows 10 19041, 7 SP1 and 11 22000 kernels
/// (each with a real tcpip.pdb table's GUID): rows equal the builder's manifest, the connection unlinked from the
/// partition table is found by the scan only and flagged; missing tcpip symbols and a build outside the layout table
/// give one-line errors.
/// </summary>
public sealed class WindowsNetworkTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Lays out the network scenario for <paramref name="guid"/>.</summary>
    internal static (string Raw, string Root, WindowsImageManifest Manifest, WindowsImageBuilder Builder) BuildNetwork(TempDir dir, string guid)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        WindowsScenario scenario = WindowsImageBuilder.NetworkScenario();
        string table = WindowsImageBuilder.TcpipTable(scenario.Network!, guid);
        var builder = new WindowsImageBuilder(types, guid, 1)
        {
            TcpipSymbols = IsfLoader.Load(SharedFiles.Require("symbols", "windows", "tcpip.pdb", table + ".json.xz")),
        };
        (byte[] image, WindowsImageManifest manifest) = builder.Build(scenario);
        return (dir.Write($"network-{guid}-{Guid.NewGuid():N}.raw", image), root, manifest, builder);
    }

    private static (string, string?, int, string?, int, TcpState?, long?, string?, DateTimeOffset?) Key(LaidOutEndpoint e)
        => (e.Proto, e.LocalAddr, e.LocalPort, e.ForeignAddr, e.ForeignPort, e.State, e.Pid, e.Owner, new DateTimeOffset(e.CreateTime));

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10, "win10-2004")]
    [InlineData(WindowsSymbols.Win7, "win7")]
    [InlineData(WindowsSymbols.Win11, "win11-21h2")]
    public void Netscan_and_netstat_rows_equal_the_manifest(string guid, string layoutName)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildNetwork(_dir, guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));
        TcpipModule tcpip = TcpipModule.Open(kernel, new SymbolStore([root]));
        Assert.Equal((manifest.TcpipGuid, manifest.TcpipAge), (tcpip.Image.Guid, (uint?)tcpip.Image.Age));
        Assert.Equal("tcpip.pdb", tcpip.Image.PdbName);
        Assert.Equal(layoutName, manifest.TcpipLayout);

        var scan = WindowsNetwork.NetScan(kernel, () => tcpip);
        var stat = WindowsNetwork.NetStat(kernel, tcpip);
        foreach (WindowsNetScanRow r in scan.Rows)
        {
            output.WriteLine($"0x{r.Offset:X} {r.Proto} {r.LocalAddr}:{r.LocalPort} {r.ForeignAddr}:{r.ForeignPort} {r.State} {r.Pid} {r.Owner} {r.Created:O} {r.InNetstat} {r.Doubt}");
        }
        Assert.Equal([$"tcpip layout: {layoutName}"], scan.Notes.Select(n => n[..n.IndexOf(' ', 14)]));
        Assert.Single(stat.Notes);
        List<LaidOutEndpoint> expected = manifest.Network!;
        Assert.Equal(7, expected.Count);
        Assert.Equal(
            expected.Select(e => (e.Physical, Key(e), (bool?)e.InNetstat, e.Kind)),
            scan.Rows.Select(r => (r.Offset, (r.Proto, r.LocalAddr, r.LocalPort, r.ForeignAddr, r.ForeignPort, r.State, r.Pid, r.Owner, r.Created), r.InNetstat, r.Kind)));
        Assert.All(scan.Rows, r => Assert.Null(r.Doubt));
        Assert.Equal(
            expected.Where(e => e.InNetstat).Select(e => (e.Address, Key(e), e.Kind)).OrderBy(e => e.Address),
            stat.Rows.Select(r => (r.Offset, (r.Proto, r.LocalAddr, r.LocalPort, r.ForeignAddr, r.ForeignPort, r.State, r.Pid, r.Owner, r.Created), r.Kind)).OrderBy(e => e.Offset));
        Assert.Equal(["PartitionTable", "PartitionTable", "PartitionTable", "TcpPortPool", "TcpPortPool", "UdpPortPool"], stat.Rows.Select(r => r.Source));

        // The attacker's traces: the reverse shell, the high-port listener of the unlinked rundll32, the hidden connection.
        WindowsNetScanRow shell = Assert.Single(scan.Rows, r => r.ForeignPort == 4444);
        Assert.Equal(("powershell.exe", 6044L, "203.0.113.7", TcpState.Established, (bool?)true), (shell.Owner, shell.Pid, shell.ForeignAddr, shell.State, shell.InNetstat));
        Assert.Contains(scan.Rows, r => r is { LocalPort: 51337, State: TcpState.Listening, Owner: "rundll32.exe" });
        Assert.Contains(scan.Rows, r => r.Proto == "TCPv6" && r.LocalAddr == "2001:db8::15");
        WindowsNetScanRow hidden = Assert.Single(scan.Rows, r => r.InNetstat == false);
        Assert.Equal(("powershell.exe", "198.51.100.23", 8080), (hidden.Owner, hidden.ForeignAddr, hidden.ForeignPort));
        Assert.DoesNotContain(stat.Rows, r => r.ForeignPort == 8080);
    }

    [SkippableFact]
    public void Windows_7_style_port_pool_symbols_are_walked_directly()
    {
        // No shared tcpip table has Windows 7's TcpPortPool/UdpPortPool globals (all reach the pools through the
        // compartment sets): derive one from a real table with those two symbols renamed, under a GUID of its own.
        const string guid = "7C0DE7A11E0A4B5C9D8E7F6A5B4C3D2E";
        string symbols = _dir.File("win7-style");
        string tcpipDir = Path.Combine(symbols, "windows", "tcpip.pdb");
        Directory.CreateDirectory(tcpipDir);
        Directory.CreateDirectory(Path.Combine(symbols, "windows", "ntkrnlmp.pdb"));
        File.Copy(WindowsSymbols.Isf(WindowsSymbols.Win7), Path.Combine(symbols, "windows", "ntkrnlmp.pdb", WindowsSymbols.Win7 + "-1.json.xz"));
        string real = SharedFiles.Require("symbols", "windows", "tcpip.pdb", WindowsImageBuilder.NetworkTcpipTables[WindowsSymbols.Win7] + ".json.xz");
        string table = Path.Combine(tcpipDir, guid + "-1.json");
        using (var input = new SharpCompress.Compressors.Xz.XZStream(File.OpenRead(real)))
        {
            var json = System.Text.Json.Nodes.JsonNode.Parse(input)!;
            var names = json["symbols"]!.AsObject();
            foreach ((string from, string to) in new[] { ("TcpCompartmentSet", "TcpPortPool"), ("UdpCompartmentSet", "UdpPortPool") })
            {
                var value = names[from]!.DeepClone();
                names.Remove(from);
                names[to] = value;
            }
            json["metadata"]!["windows"]!["pdb"]!["GUID"] = guid;
            File.WriteAllText(table, json.ToJsonString());
        }
        (_, TypeModel types) = WindowsSymbols.Load(WindowsSymbols.Win7);
        WindowsScenario scenario = WindowsImageBuilder.NetworkScenario();
        scenario = scenario with { Network = scenario.Network! with { TcpipPdb = new Dictionary<string, string> { ["*"] = guid + "-1" } } };
        (byte[] image, WindowsImageManifest manifest) = new WindowsImageBuilder(types, WindowsSymbols.Win7, 1) { TcpipSymbols = IsfLoader.Load(table) }.Build(scenario);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("win7-style.raw", image));
        var store = new SymbolStore([symbols]);
        WindowsKernel kernel = WindowsKernel.Open(memory, store);
        TcpipModule tcpip = TcpipModule.Open(kernel, store);
        Assert.True(tcpip.TryGetSymbol("TcpPortPool", out _));
        Assert.False(tcpip.TryGetSymbol("TcpCompartmentSet", out _));

        var stat = WindowsNetwork.NetStat(kernel, tcpip);
        Assert.Single(stat.Notes);
        Assert.Equal(
            manifest.Network!.Where(e => e.InNetstat).Select(e => (e.Address, Key(e))).OrderBy(e => e.Address),
            stat.Rows.Select(r => (r.Offset, (r.Proto, r.LocalAddr, r.LocalPort, r.ForeignAddr, r.ForeignPort, r.State, r.Pid, r.Owner, r.Created))).OrderBy(e => e.Offset));
        Assert.Equal(3, stat.Rows.Count(r => r.Source != "PartitionTable"));
    }

    [SkippableFact]
    public void Missing_tcpip_symbols_name_the_pdb_guid_age_and_every_path_tried()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildNetwork(_dir, WindowsSymbols.Win10);
        // A symbol directory with the kernel's table only.
        string kernelOnly = _dir.File("kernel-only");
        Directory.CreateDirectory(Path.Combine(kernelOnly, "windows", "ntkrnlmp.pdb"));
        File.Copy(WindowsSymbols.Isf(WindowsSymbols.Win10), Path.Combine(kernelOnly, "windows", "ntkrnlmp.pdb", WindowsSymbols.Win10 + "-1.json.xz"));
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        var store = new SymbolStore([kernelOnly]);
        WindowsKernel kernel = WindowsKernel.Open(memory, store);

        var e = Assert.Throws<KernelNotFoundException>(() => TcpipModule.Open(kernel, store));
        output.WriteLine(e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith($"tcpip.sys at 0x{manifest.Drivers.Single(d => d.Name == "tcpip.sys").Base:X}: missing: no table for tcpip.pdb {manifest.TcpipGuid}-1; looked in: ", e.Message);
        foreach (string tried in store.FindWindows("tcpip.pdb", manifest.TcpipGuid!, 1).Tried)
        {
            Assert.Contains(tried, e.Message);
        }
        Assert.Contains(Path.Combine(kernelOnly, "windows", "tcpip.pdb"), e.Message);

        // netscan still gives its rows, with InNetstat unknown and the same reason as a note.
        var scan = WindowsNetwork.NetScan(kernel, () => TcpipModule.Open(kernel, store));
        Assert.Equal(7, scan.Rows.Count);
        Assert.All(scan.Rows, r => Assert.Null(r.InNetstat));
        Assert.Contains(scan.Notes, n => n == "InNetstat not known: " + e.Message);

        // The command line: one error line, non-zero exit.
        var environment = new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") };
        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, "windows.netstat", raw, "--symbols", kernelOnly);
        Assert.NotEqual(0, exit);
        Assert.Contains($"no table for tcpip.pdb {manifest.TcpipGuid}-1; looked in: ", stderr);
        Assert.Equal("", stdout.Trim());
    }

    [SkippableFact]
    public void A_build_outside_the_layout_table_is_refused_with_the_covered_ranges()
    {
        (string raw, string root, _, WindowsImageBuilder builder) = BuildNetwork(_dir, WindowsSymbols.Win11);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(clean.TryGetSymbol("NtBuildNumber", out ulong build));
        Assert.True(clean.Kernel.TryTranslate(build, out Translation t, out _));
        using var overlay = new OverlayMemory(file);
        overlay.Patch(t.PhysicalAddress, BitConverter.GetBytes(0xF0000000u | 22621));   // Windows 11 22H2
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([root]));

        var e = Assert.Throws<KernelNotFoundException>(() => WindowsNetwork.NetScan(kernel, () => TcpipModule.Open(kernel, new SymbolStore([root]))));
        Assert.Equal($"no tcpip.sys layout for Windows 10.0.22621 (NtBuildNumber at 0x{build:X}); the layout table covers " +
                     string.Join(", ", TcpipLayouts.All.Select(l => l.Builds)), e.Message);
        Assert.Contains("10.0.22000", e.Message);
        Assert.Throws<KernelNotFoundException>(() => WindowsNetwork.NetStat(kernel, TcpipModule.Open(kernel, new SymbolStore([root]))));
        Assert.NotNull(builder);
    }

    [SkippableFact]
    public void Broken_tcpip_tables_end_their_walk_with_a_note_and_keep_the_rest()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildNetwork(_dir, WindowsSymbols.Win10);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        var store = new SymbolStore([root]);
        WindowsKernel clean = WindowsKernel.Open(file, store);
        TcpipLayout layout = TcpipLayouts.Find(10, 0, 19041)!;
        ulong Physical(ulong va) => clean.Kernel.TryTranslate(va, out Translation t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
        LaidOutEndpoint listener = manifest.Network!.Single(e => e.LocalPort == 51337);
        LaidOutEndpoint shell = manifest.Network!.Single(e => e.ForeignPort == 4444);

        // The high-port listener's Next points back at itself (a loop), and the reverse shell's bucket link is garbage.
        using var broken = new OverlayMemory(file);
        ulong next = listener.Address + (ulong)layout.Listener.Next;
        broken.PatchUInt64(Physical(next), next | 1);
        broken.PatchUInt64(Physical(shell.Address + (ulong)layout.Endpoint.ListEntry), 0xFFFFB00000000010);
        WindowsKernel kernel = WindowsKernel.Open(broken, store);
        var stat = WindowsNetwork.NetStat(kernel, TcpipModule.Open(kernel, store));
        foreach (string note in stat.Notes)
        {
            output.WriteLine(note);
        }
        Assert.Contains(stat.Notes, n => n.StartsWith("TcpPortPool port 51337: chain stopped at 0x", StringComparison.Ordinal));
        Assert.Contains(stat.Notes, n => n.Contains("0xFFFFB00000000010", StringComparison.Ordinal));
        Assert.Single(stat.Rows, r => r.LocalPort == 51337);
        Assert.Contains(stat.Rows, r => r.ForeignPort == 4444);                 // the bucket's first entry is still read
        Assert.Equal(6, stat.Rows.Count);
        var scan = WindowsNetwork.NetScan(kernel, () => TcpipModule.Open(kernel, store));
        Assert.Equal(7, scan.Rows.Count);
    }

    [SkippableFact]
    public void Netscan_command_prints_typed_json_rows()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildNetwork(_dir, WindowsSymbols.Win10);
        var environment = new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") };
        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, "windows.netscan", raw, "--symbols", root, "--output", "json", "--pid", "6044");
        Assert.True(exit == 0, stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement[] rows = [.. json.RootElement.GetProperty("rows").EnumerateArray()];
        Assert.Equal([4444, 8080], rows.Select(r => r.GetProperty("foreignPort").GetInt32()));
        Assert.Equal($"0x{manifest.Network!.Single(n => n.ForeignPort == 4444).Physical:X}", rows[0].GetProperty("offset").GetString());
        Assert.Equal("2024-07-07T10:13:05.0000000Z", rows[0].GetProperty("created").GetString());
        Assert.Equal([true, false], rows.Select(r => r.GetProperty("inNetstat").GetBoolean()));
    }
}
