using System.Collections.Concurrent;
using System.Diagnostics;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// The "registry" scenario (attack + SYSTEM/SOFTWARE/SAM/NTUSER.DAT hives written by hivexregedit) laid out once per
/// build: the regf bytes, the raw image, its manifest.
/// </summary>
public sealed class WindowsRegistryImages : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<string, Lazy<Built>> _built = new();

    /// <summary>One built image and its hives.</summary>
    public sealed record Built(string Raw, string Root, WindowsImageManifest Manifest, IReadOnlyList<ScenarioHive> Hives, bool Aes);

    /// <summary>Skips (or fails under CLOUDMEM_REQUIRE_FIXTURES=1) when hivexregedit is not installed.</summary>
    public static void RequireHivex()
    {
        if (RegistryHiveFiles.Hivexregedit is not null)
        {
            return;
        }
        if (Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException("hivexregedit is required (tests/run.sh installs libwin-hivex-perl)");
        }
        Skip.If(true, "hivexregedit not installed (apt-get install libwin-hivex-perl)");
    }

    /// <summary>
    /// The registry image of <paramref name="guid"/>; <paramref name="pageOutSamHalf"/> pages out the SAM's last half of
    /// bins, <paramref name="pageOutSecurityTail"/> the SECURITY hive's bin holding the cached logon NL$2; <paramref name="preVistaLsa"/> writes the
    /// SECURITY hive with pre-Vista LSA encryption.
    /// </summary>
    public Built Get(string guid, bool pageOutSamHalf = false, bool preVistaLsa = false, bool pageOutSecurityTail = false)
        => _built.GetOrAdd($"{guid}-{pageOutSamHalf}-{preVistaLsa}-{pageOutSecurityTail}", _ => new Lazy<Built>(() =>
    {
        RequireHivex();
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        var builder = new WindowsImageBuilder(types, guid, 1);
        WindowsScenario scenario = RegistryScenario.With(WindowsImageBuilder.AttackScenario(), builder, preVistaLsa: preVistaLsa);
        if (pageOutSecurityTail)
        {
            ScenarioHive security = scenario.Hives![4];
            int bin = RegistryScenario.BinHolding(security.Bytes!, SecurityHive.IvOf("NL$2"));
            scenario = scenario with { Hives = [.. scenario.Hives.Select(h => h == security ? h with { PagedOutBins = [bin] } : h)] };
        }
        if (pageOutSamHalf)
        {
            ScenarioHive sam = scenario.Hives![2];
            int bins = RegistryScenario.BinCount(sam.Bytes!);
            // Half the bins, from the third on (the first two hold the root and the keys down to Users, as hivex lays them out).
            int first = Math.Max(2, bins / 4);
            scenario = scenario with { Hives = [.. scenario.Hives.Select(h => h == sam ? h with { PagedOutBins = [.. Enumerable.Range(first, bins / 2)] } : h)] };
        }
        (byte[] image, WindowsImageManifest manifest) = builder.Build(scenario);
        return new Built(_dir.Write($"registry-{guid}-{pageOutSamHalf}-{preVistaLsa}-{pageOutSecurityTail}.raw", image), root, manifest, scenario.Hives!, RegistryScenario.UsesAes(builder));
    })).Value;

    public void Dispose() => _dir.Dispose();

    /// <summary>Opens the built image with its symbols.</summary>
    public static WindowsKernel Open(Built built, out RunMappedMemory memory)
    {
        ArgumentNullException.ThrowIfNull(built);
        memory = CaptureOpener.Open(built.Raw);
        return WindowsKernel.Open(memory, new SymbolStore([built.Root]));
    }

    /// <summary>Writes a report's rows and notes to the test output.</summary>
    public static void Print<T>(ITestOutputHelper output, Engine.Plugins.RowsReport<T> report) where T : notnull
    {
        foreach (T row in report.Rows)
        {
            output.WriteLine(row.ToString());
        }
        foreach (string note in report.Notes)
        {
            output.WriteLine("note: " + note);
        }
    }

    /// <summary>
    /// impacket's secretsdump (tests/peers/windows-secretsdump-impacket.py, <paramref name="mode"/> sam or security) on
    /// the SYSTEM hive and the hive <paramref name="hive"/> of <paramref name="built"/>, written beside the image; its
    /// output lines. Skips when impacket is not installed (fails under CLOUDMEM_REQUIRE_FIXTURES=1).
    /// </summary>
    public static string[] Impacket(Built built, string mode, int hive, ITestOutputHelper output)
    {
        ArgumentNullException.ThrowIfNull(built);
        ArgumentNullException.ThrowIfNull(output);
        Skip.IfNot(File.Exists("/usr/bin/python3"), "no /usr/bin/python3 (Debian python with python3-impacket)");
        string script = Path.Combine(Fixture.RepoRoot, "tests", "peers", "windows-secretsdump-impacket.py");
        string system = built.Raw + ".SYSTEM.hive", other = $"{built.Raw}.{mode}.hive";
        File.WriteAllBytes(system, built.Hives[0].Bytes!);
        File.WriteAllBytes(other, built.Hives[hive].Bytes!);
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = System.Text.Encoding.UTF8 };
        foreach (string arg in new[] { script, mode, system, other })
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd(), stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode == 3 && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") != "1")
        {
            Skip.If(true, "python3-impacket not installed (apt-get install python3-impacket): " + stderr.Trim());
        }
        Assert.True(process.ExitCode == 0, $"impacket exited {process.ExitCode}: {stderr}");
        output.WriteLine(stdout);
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}

/// <summary>
/// windows.registry.hivelist/printkey/userassist and windows.hashdump on hives laid out as the kernel holds them
/// (Windows 7 BlockAddress maps, Windows 10/11 PermanentBinAddress maps), against the hives' known content, the known
/// NT/LM hashes of "password", impacket's secretsdump on the same hive bytes, and with half a hive's bins paged out.
/// </summary>
public sealed class WindowsRegistryTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    private static WindowsKernel Open(WindowsRegistryImages.Built built, out RunMappedMemory memory) => WindowsRegistryImages.Open(built, out memory);

    private void Print<T>(Engine.Plugins.RowsReport<T> report) where T : notnull => WindowsRegistryImages.Print(output, report);

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Hivelist_equals_the_manifest(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsRegistry.HiveList(kernel);
            Print(report);
            Assert.Empty(report.Notes);
            Assert.Equal(built.Manifest.Hives!.Select(h => (h.Address, (string?)h.FileFullPath, h.FileUserName, (ulong)h.StableLength)),
                report.Rows.Select(r => (r.Offset, r.FileFullPath, r.FileUserName, r.StableLength)));
            Assert.Equal([@"\REGISTRY\MACHINE\SYSTEM", @"\REGISTRY\MACHINE\SOFTWARE", @"\REGISTRY\MACHINE\SAM", $@"\REGISTRY\USER\{RegistryScenario.AliceSid}", RegistryScenario.SecurityPath],
                report.Rows.Select(r => r.FileFullPath));
            // Each hive's stable length is what its regf header says.
            Assert.Equal(built.Hives.Select(h => (ulong)BitConverter.ToUInt32(h.Bytes!, 0x28)), report.Rows.Select(r => r.StableLength));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Printkey_shows_the_run_keys_the_service_and_every_value_type(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var run = WindowsRegistry.PrintKey(kernel, @"Microsoft\Windows\CurrentVersion\Run");
            Print(run);
            Assert.Equal(
                [("REG_EXPAND_SZ", "SecurityHealth", @"%windir%\system32\SecurityHealthSystray.exe"), ("REG_SZ", "Updater", @"C:\Users\Public\update.exe")],
                run.Rows.Select(r => (r.Type, r.Name!, r.Data!)));
            Assert.All(run.Rows, r => Assert.Equal(@"\REGISTRY\MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run", r.Key));
            Assert.All(run.Rows, r => Assert.Equal(built.Manifest.Hives![1].Address, r.HiveOffset));

            // The user's Run key is found in NTUSER.DAT only (printkey looks in every hive).
            var userRun = WindowsRegistry.PrintKey(kernel, @"Software\Microsoft\Windows\CurrentVersion\Run");
            Assert.Equal(("OneDriveSync", @"C:\Users\alice\AppData\Roaming\sync.exe -bg"), Assert.Single(userRun.Rows, r => r.Type != "Key").Let(r => (r.Name!, r.Data!)));

            var service = WindowsRegistry.PrintKey(kernel, @"ControlSet001\Services\EvilSvc");
            Print(service);
            Assert.Equal(
                [("REG_EXPAND_SZ", "ImagePath", @"%SystemRoot%\Temp\evilsvc.exe"), ("REG_SZ", "DisplayName", "Windows Update Helper"), ("REG_DWORD", "Start", "2"),
                 ("REG_DWORD", "Type", "16"), ("REG_SZ", "ObjectName", "LocalSystem")],
                service.Rows.Select(r => (r.Type, r.Name!, r.Data!)));
            var services = WindowsRegistry.PrintKey(kernel, @"controlset001\SERVICES");      // case-insensitive, as Windows
            Assert.Equal(["EvilDll", "EvilSvc", "Fax", "Tcpip"], services.Rows.Where(r => r.Type == "Key").Select(r => r.Name!).Order(StringComparer.Ordinal));

            var version = WindowsRegistry.PrintKey(kernel, @"Microsoft\Windows NT\CurrentVersion");
            Assert.Contains(version.Rows, r => r is { Type: "Key", Name: "Winlogon", Volatile: false });
            Assert.Equal(new DateTime(2024, 1, 15, 10, 0, 0, DateTimeKind.Utc).ToFileTimeUtc().ToString(System.Globalization.CultureInfo.InvariantCulture),
                Assert.Single(version.Rows, r => r.Name == "InstallTime").Let(r => Assert.Equal("REG_QWORD", r.Type)).Data);
            Assert.Equal("alpha\nbeta", Assert.Single(version.Rows, r => r.Name == "Tags").Data);
            // The 20000-byte value spans several pages of its bin (and several bins' worth of map entries).
            string blob = Assert.Single(version.Rows, r => r.Name == "Blob").Data!;
            Assert.StartsWith(Convert.ToHexString(Enumerable.Range(0, 64).Select(i => (byte)(i * 7)).ToArray()), blob, StringComparison.Ordinal);
            Assert.Equal(4096 * 2 + 3, blob.Length);
            Assert.Empty(version.Notes);

            // Root of every hive, and a key that is nowhere.
            var root = WindowsRegistry.PrintKey(kernel, "");
            Assert.Contains(root.Rows, r => r is { Type: "Key", Name: "Select" } && r.Key == @"\REGISTRY\MACHINE\SYSTEM");
            Assert.Contains(root.Rows, r => r is { Type: "Key", Name: "SAM" } && r.Key == @"\REGISTRY\MACHINE\SAM");
            var none = WindowsRegistry.PrintKey(kernel, @"No\Such\Key");
            Assert.Empty(none.Rows);
            Assert.Contains("in none of the 5 hives", Assert.Single(none.Notes), StringComparison.Ordinal);
        }
    }

    /// <summary>CurrentControlSet lives in the SYSTEM hive's volatile storage (Storage[1], cell indexes with bit 31), as on Windows.</summary>
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Volatile_keys_are_read_through_the_volatile_storage_map(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        Assert.Equal(0x1000u, built.Manifest.Hives![0].VolatileLength);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            Assert.Equal(0x1000UL, WindowsRegistry.HiveList(kernel).Rows[0].VolatileLength);
            var root = WindowsRegistry.PrintKey(kernel, "", built.Manifest.Hives[0].Address);
            Print(root);
            Assert.Empty(root.Notes);
            PrintKeyRow link = Assert.Single(root.Rows, r => r.Name == "CurrentControlSet");
            Assert.True(link.Volatile);
            Assert.Equal(new DateTimeOffset(2024, 7, 7, 9, 30, 0, TimeSpan.Zero), link.LastWriteTime);
            Assert.All(root.Rows.Where(r => r.Name != "CurrentControlSet"), r => Assert.False(r.Volatile));
            var value = WindowsRegistry.PrintKey(kernel, "CurrentControlSet");
            Assert.Equal(("REG_LINK", "SymbolicLinkValue", @"\REGISTRY\MACHINE\SYSTEM\ControlSet001", true),
                Assert.Single(value.Rows).Let(r => (r.Type, r.Name!, r.Data!, r.Volatile)));
            // The file on disk has no volatile keys (Windows never writes them).
            Assert.Equal(0u, BitConverter.ToUInt32(built.Hives[0].Bytes!, 0x1000 + 0x20 + 4 + 0x18));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    public void Userassist_decodes_names_counts_and_times(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsRegistry.UserAssist(kernel);
            Print(report);
            Assert.Empty(report.Notes);
            Assert.Equal(
                [(@"{1AC14E77-02E7-4E5D-B744-2EB1AE5198B7}\cmd.exe", 7u, 3u, 42.0, new DateTimeOffset(2024, 7, 7, 10, 15, 0, TimeSpan.Zero)),
                 (@"C:\Users\alice\Downloads\invoice.docm", 1u, 1u, 5.0, new DateTimeOffset(2024, 7, 7, 10, 12, 0, TimeSpan.Zero))],
                report.Rows.Select(r => (r.Name, r.Count!.Value, r.FocusCount!.Value, r.TimeFocused!.Value.TotalSeconds, r.LastUpdated!.Value)));
            Assert.All(report.Rows, r => Assert.Equal(built.Manifest.Hives![3].Address, r.HiveOffset));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Hashdump_gives_the_hashes_of_the_known_passwords(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsHashDump.HashDump(kernel);
            Print(report);
            Assert.Empty(report.Notes);
            Assert.Equal(RegistryScenario.Users.Select(u => ((string?)u.Name, u.Rid, (string?)u.LmHashFor(built.Aes), (string?)u.NtHash)),
                report.Rows.Select(r => (r.User, r.Rid, r.LmHash, r.NtHash)));
            // Published hashes of "password" (independent of our MD4/DES): NT 8846f7ea..., LM e52cac67... (stored only before the AES era here).
            HashDumpRow admin = report.Rows[0];
            Assert.Equal("8846f7eaee8fb117ad06bdd830b7586c", admin.NtHash);
            Assert.Equal(built.Aes ? WindowsHashDump.EmptyLm : "e52cac67419a9a224a3b108f3fa6cb6d", admin.LmHash);
            Assert.Equal(WindowsHashDump.EmptyNt, report.Rows[1].NtHash);        // Guest: no password
            Assert.Equal(guid != WindowsSymbols.Win7, built.Aes);
        }
    }

    /// <summary>impacket's secretsdump (LOCAL: the SYSTEM and SAM hive files) on the very hive bytes laid out.</summary>
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Hashdump_equals_impacket_secretsdump_on_the_same_hives(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        string[] lines = WindowsRegistryImages.Impacket(built, "sam", 2, output);
        Assert.Equal("bootkey:" + Convert.ToHexString(RegistryScenario.BootKey).ToLowerInvariant(), lines[0]);

        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsHashDump.HashDump(kernel);
            Assert.Equal(lines[1..], report.Rows.Select(r => $"{r.User}:{r.Rid}:{r.LmHash}:{r.NtHash}:::"));
            Assert.Equal(RegistryScenario.Users.Count, lines.Length - 1);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    public void Half_the_sam_bins_paged_out_names_the_cells_and_hashes_that_could_not_be_read(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid, pageOutSamHalf: true);
        LaidOutHive samHive = built.Manifest.Hives![2];
        List<LaidOutBin> out_ = [.. samHive.Bins.Where(b => b.PagedOut)];
        Assert.Equal(samHive.Bins.Count / 2, out_.Count);
        Assert.Equal(6, samHive.Bins.Count);      // root | keys to Users, Administrator | Guest | alice | svc_backup | Names, lists
        bool InPagedOutBin(ulong address) => out_.Any(b => address >= b.Address && address < b.Address + b.Size);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            // Every bin page that was paged out reads as a pagefile PTE, never as data.
            Assert.All(out_, b => Assert.False(kernel.Kernel.TryTranslate(b.Address, out _, out TranslationFault f) || f != TranslationFault.SwappedOut));

            var faults = new List<CellFault>();
            RegistryHive sam = RegistryHive.List(kernel).Hives[2];
            var report = WindowsRegistry.PrintKey(kernel, @"SAM\Domains\Account\Users", samHive.Address);
            Print(report);
            RegistryKey users = RegistryKeys.Open(sam, @"SAM\Domains\Account\Users", out _, faults)!;
            Assert.NotNull(users);
            PrintKeyRow[] doubtful = [.. report.Rows.Where(r => r.Doubt is not null)];
            Assert.NotEmpty(doubtful);
            Assert.All(doubtful, r => Assert.Contains("SwappedOut", r.Doubt!, StringComparison.Ordinal));
            Assert.All(doubtful, r => Assert.Null(r.Name));
            // The cells named are in paged-out bins (the address in the doubt) and are the subkeys that did not read.
            RegistryKeys.Subkeys(sam, users, faults);
            Assert.NotEmpty(faults);
            Assert.All(faults, f => Assert.True(f.Address is { } a && InPagedOutBin(a), f.ToString()));
            Assert.Equal(faults.Select(f => f.ToString()).Order(StringComparer.Ordinal), doubtful.Select(r => r.Doubt!).Order(StringComparer.Ordinal));
            Assert.Contains(report.Rows, r => r is { Type: "Key", Name: "000001F4", Doubt: null });

            // hashdump: the accounts that read have their right hashes; each other one is named with the reason.
            var hashes = WindowsHashDump.HashDump(kernel);
            Print(hashes);
            int read = 0, named = 0;
            foreach (SamUser user in RegistryScenario.Users)
            {
                HashDumpRow? row = hashes.Rows.FirstOrDefault(r => r.Rid == user.Rid);
                if (row is { NtHash: not null })
                {
                    Assert.Equal((user.LmHashFor(built.Aes), user.NtHash), (row.LmHash, row.NtHash));
                    read++;
                }
                else if (row?.Doubt?.StartsWith("the account's key", StringComparison.Ordinal) == true)
                {
                    Assert.Matches($@"^the account's key Users\\{user.Rid:X8} did not read \(unreadable cells under Users: cell 0x[0-9A-F]+ at 0x[0-9A-F]+: page not in memory \(SwappedOut\)", row.Doubt);
                    Assert.Equal(user.Name, row.User);
                    named++;
                }
                else if (row is not null)
                {
                    Assert.Matches($"V value of RID {user.Rid} .* did not read: cell 0x[0-9A-F]+ at 0x[0-9A-F]+: page not in memory \\(SwappedOut\\)", row.Doubt);
                    named++;
                }
                else
                {
                    // The user's key itself did not read: its cell is in the notes.
                    Assert.Contains(hashes.Notes, n => n.Contains("SwappedOut", StringComparison.Ordinal) && n.Contains("hashes are missing", StringComparison.Ordinal));
                }
            }
            Assert.Equal(RegistryScenario.Users.Count, read + named);     // every account: its hashes, or why they are missing
            Assert.True(read < RegistryScenario.Users.Count, "every account read although half the bins are paged out");
            Assert.Equal("Administrator", Assert.Single(hashes.Rows, r => r.Rid == 500).User);    // the name from Users\Names
            output.WriteLine($"read {read}, named {named}");
        }
    }

    /// <summary>A hive list looping back into itself, a hive without its signature and a map entry pointing nowhere.</summary>
    [SkippableFact]
    public void A_broken_hive_list_or_map_gives_partial_rows_and_notes_never_an_exception()
    {
        WindowsRegistryImages.Built built = images.Get(WindowsSymbols.Win10);
        (string _, TypeModel types) = WindowsSymbols.Load(WindowsSymbols.Win10);
        Assert.True(types.TryGetOffset("_CMHIVE", "HiveList", out int hiveList));
        Assert.True(types.TryGetOffset("_CMHIVE", "Hive.Signature", out int signature));
        WindowsKernel clean = Open(built, out RunMappedMemory file);
        using (file)
        {
            ulong Physical(ulong va) => clean.Kernel.TryTranslate(va, out Translation t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
            List<LaidOutHive> hives = built.Manifest.Hives!;

            // SOFTWARE's Flink back to SYSTEM: SYSTEM, SOFTWARE, then a cycle.
            using var cyclic = new OverlayMemory(file);
            cyclic.PatchUInt64(Physical(hives[1].Address + (ulong)hiveList), hives[0].Address + (ulong)hiveList);
            WindowsKernel kernel = WindowsKernel.Open(cyclic, new SymbolStore([built.Root]));
            var list = WindowsRegistry.HiveList(kernel);
            Assert.Equal([@"\REGISTRY\MACHINE\SYSTEM", @"\REGISTRY\MACHINE\SOFTWARE"], list.Rows.Select(r => r.FileFullPath));
            Assert.Contains("cycle", Assert.Single(list.Notes), StringComparison.OrdinalIgnoreCase);

            // SAM's signature overwritten: skipped with a note naming it; the others are listed.
            using var unsigned = new OverlayMemory(file);
            unsigned.Patch(Physical(hives[2].Address + (ulong)signature), [0, 0, 0, 0]);
            kernel = WindowsKernel.Open(unsigned, new SymbolStore([built.Root]));
            list = WindowsRegistry.HiveList(kernel);
            Assert.Equal(4, list.Rows.Count);
            Assert.Equal($"_CMHIVE at 0x{hives[2].Address:X}: no hive signature (0x0); skipped", Assert.Single(list.Notes));
            Assert.Contains(WindowsHashDump.HashDump(kernel).Notes, n => n.StartsWith("no SAM hive", StringComparison.Ordinal));

            // SOFTWARE's Storage[0].Map pointing at garbage: every cell read names the map directory entry that does not read.
            Assert.True(types.TryGetOffset("_CMHIVE", "Hive.Storage", out int storage));
            Assert.True(types.TryGetOffset("_DUAL", "Map", out int map));
            using var badMap = new OverlayMemory(file);
            badMap.PatchUInt64(Physical(hives[1].Address + (ulong)storage + (ulong)map), 0xFFFFB00000000000);
            kernel = WindowsKernel.Open(badMap, new SymbolStore([built.Root]));
            var run = WindowsRegistry.PrintKey(kernel, @"Microsoft\Windows\CurrentVersion\Run");
            Print(run);
            Assert.Empty(run.Rows);
            Assert.Contains(run.Notes, n => n.StartsWith(@"\REGISTRY\MACHINE\SOFTWARE: Microsoft\Windows\CurrentVersion\Run: cell 0x20 at 0xFFFFB00000000000: map directory entry 0 does not read", StringComparison.Ordinal));
            Assert.Contains("a cell on the way did not read", run.Notes[^1], StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Only_printkey_takes_a_key_path()
    {
        var key = new PluginArguments { KeyPath = @"ControlSet001\Services" };
        Assert.Null(PluginRegistry.Validate(PluginRegistry.Get("windows.registry.printkey").Info, key));
        Assert.Equal("windows.pslist does not take --key", PluginRegistry.Validate(PluginRegistry.Get("windows.pslist").Info, key));
        Assert.Null(PluginRegistry.Validate(PluginRegistry.Get("windows.registry.printkey").Info, PluginArguments.None));
    }

}

internal static class LetExtension
{
    /// <summary>Applies <paramref name="f"/> to a value (for assertions on one row in an expression).</summary>
    public static TOut Let<TIn, TOut>(this TIn value, Func<TIn, TOut> f) => f(value);

    /// <summary>Runs <paramref name="check"/> on a value and returns it.</summary>
    public static TIn Let<TIn>(this TIn value, Action<TIn> check)
    {
        check(value);
        return value;
    }
}
