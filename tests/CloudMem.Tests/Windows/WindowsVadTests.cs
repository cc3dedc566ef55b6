using System.Reflection.PortableExecutable;
using System.Text.Json;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.vadinfo, ldrmodules, malfind, hollowfind, procdump and dlldump on the attack scenario laid out with the
/// Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs: rows equal the builder's manifest; damaged VAD trees give
/// partial rows and notes.
/// </summary>
public sealed class WindowsVadTests(WindowsAttackImages images, ITestOutputHelper output) : IClassFixture<WindowsAttackImages>, IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (WindowsAttackImages.Built Built, RunMappedMemory Memory, WindowsKernel Kernel) Open(string guid)
    {
        WindowsAttackImages.Built built = images.Get(guid);
        RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        return (built, memory, WindowsKernel.Open(memory, new SymbolStore([built.Root])));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Vadinfo_lists_every_region_the_builder_laid_out(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory memory, WindowsKernel kernel) = Open(guid);
        using RunMappedMemory owned = memory;

        var report = WindowsVadPlugins.VadInfo(kernel);

        Assert.Empty(report.Notes);
        var expected = built.Manifest.Processes.SelectMany(p => p.Regions.OrderBy(r => r.Start).Select(r => (
            (long)p.Pid, r.Vad, r.Start, r.End, r.Kind.ToString(), r.Protection, r.FileName,
            (string?)(r.Kind == RegionKind.Private ? "VadS" : "Vad "), r.Kind == RegionKind.Private)));
        Assert.Equal(expected, report.Rows.Select(r => (r.Pid, r.Offset, r.Start, r.End, r.Type.ToString(), r.Protection, r.File, r.Tag, r.PrivateMemory)));
        Assert.All(report.Rows.Where(r => r.PrivateMemory), r => Assert.Equal((r.End - r.Start + 1) / 0x1000, r.CommitCharge));
        Assert.DoesNotContain(report.Rows, r => r.Pid == 4);
        output.WriteLine($"{guid}: {report.Rows.Count} VADs in {built.Manifest.Processes.Count} processes");
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Malfind_hits_are_exactly_the_injected_regions(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory memory, WindowsKernel kernel) = Open(guid);
        using RunMappedMemory owned = memory;

        var report = WindowsVadPlugins.Malfind(kernel);

        Assert.Empty(report.Notes);
        var expected = built.Manifest.Processes.SelectMany(p => p.InjectedRegions.Select(a => ((long)p.Pid, a))).OrderBy(x => x.Item1).ThenBy(x => x.a);
        Assert.Equal(expected, report.Rows.Select(r => (r.Pid, r.Start)).OrderBy(x => x.Pid).ThenBy(x => x.Start));
        Assert.All(report.Rows, r => Assert.NotEqual(VadKind.Image, r.Type));
        Assert.All(report.Rows, r => Assert.Equal("PAGE_EXECUTE_READWRITE", r.Protection));
        WindowsMalfindRow shellcode = report.Rows.Single(r => r.Start == 0x0000020000100000);
        Assert.Equal(["cld", "and rsp, 0xFFFFFFFFFFFFFFF0"], shellcode.Disassembly.Take(2).Select(l => l[(l.IndexOf("  ", StringComparison.Ordinal) + 2)..]));
        Assert.StartsWith("0x020000100000  fc 48 83 e4 f0", shellcode.Hexdump[0]);
        Assert.StartsWith("MZ header", report.Rows.Single(r => r.Pid == 844).Notes);
        Assert.StartsWith("MZ header", report.Rows.Single(r => r.Start == 0x0000020000000000).Notes);
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Ldrmodules_flags_are_the_loader_lists_the_builder_wrote(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory memory, WindowsKernel kernel) = Open(guid);
        using RunMappedMemory owned = memory;
        WindowsScenario scenario = WindowsImageBuilder.AttackScenario();

        var report = WindowsVadPlugins.LdrModules(kernel);

        Assert.Empty(report.Notes);
        // Every module (images and the hollowed executable's private PE), plus injected PEs on no list.
        var expected = built.Manifest.Processes.SelectMany(p => p.Modules.Select(m => ((long)p.Pid, m.Base, m.InLoad, m.InInit, m.InMemory))
                .Concat(scenario.Processes.Single(s => s.Pid == p.Pid).Injected?.Where(i => i.Content == "pe").Select(i => ((long)p.Pid, i.Address, false, false, false)) ?? []))
            .OrderBy(x => x.Item1).ThenBy(x => x.Item2);
        Assert.Equal(expected, report.Rows.Select(r => (r.Pid, r.Base, r.InLoad, r.InInit, r.InMem)).OrderBy(x => x.Pid).ThenBy(x => x.Base));
        Assert.Equal("image mapped but on no loader list", report.Rows.Single(r => r.MappedPath?.EndsWith(@"\evil.dll", StringComparison.Ordinal) == true).Suspicious);
        Assert.Equal("missing from the load order list", report.Rows.Single(r => r.MappedPath?.EndsWith(@"\amsi.dll", StringComparison.Ordinal) == true).Suspicious);
        Assert.Equal(["0x7ff71e400000 844 Private", "0x7ffba0800000 5120 Image", "0x20000000000 6044 Private", "0x7ffba0600000 6044 Image"],
            report.Rows.Where(r => r.Suspicious is not null).Select(r => $"0x{r.Base:x} {r.Pid} {r.Type}"));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Hollowfind_reports_the_hollowed_processes_and_the_kind(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory memory, WindowsKernel kernel) = Open(guid);
        using RunMappedMemory owned = memory;

        var report = WindowsVadPlugins.HollowFind(kernel);

        Assert.Empty(report.Notes);
        var expected = built.Manifest.Processes.Where(p => p.Hollow is not null)
            .Select(p => ((long)p.Pid, p.Hollow == HollowKind.Unmapped ? HollowSign.NotImage : HollowSign.PathMismatch));
        Assert.Equal(expected, report.Rows.Select(r => (r.Pid, r.Sign)));
        Assert.Equal(@"\Device\HarddiskVolume3\Users\Public\update.exe", report.Rows.Single(r => r.Sign == HollowSign.PathMismatch).MappedPath);
        Assert.Equal(VadKind.Private, report.Rows.Single(r => r.Sign == HollowSign.NotImage).VadType);
    }

    [Theory]
    [InlineData(@"\Device\HarddiskVolume3\Windows\System32\svchost.exe", @"C:\Windows\System32\svchost.exe", "svchost.exe", true)]
    [InlineData(@"\Device\HarddiskVolume3\WINDOWS\system32\SVCHOST.EXE", @"C:\Windows\System32\svchost.exe", "svchost.exe", true)]
    [InlineData(@"\Device\HarddiskVolume3\Users\Public\update.exe", @"C:\Windows\System32\svchost.exe", "svchost.exe", false)]
    [InlineData(@"\Device\HarddiskVolume3\Windows\System32\averyveryverylongname.exe", null, "averyveryverylo", true)]
    [InlineData(@"\Device\HarddiskVolume3\Windows\System32\update.exe", "", "svchost.exe", false)]
    [InlineData(null, @"C:\x.exe", "x.exe", true)]
    public void Section_file_and_image_path_are_compared_without_the_volume(string? mapped, string? path, string name, bool same)
        => Assert.Equal(same, WindowsVadPlugins.SameFile(mapped, path, name));

    [Theory]
    [InlineData(1, "PAGE_READONLY", false, false)]
    [InlineData(2, "PAGE_EXECUTE", true, false)]
    [InlineData(3, "PAGE_EXECUTE_READ", true, false)]
    [InlineData(4, "PAGE_READWRITE", false, true)]
    [InlineData(5, "PAGE_WRITECOPY", false, true)]
    [InlineData(6, "PAGE_EXECUTE_READWRITE", true, true)]
    [InlineData(7, "PAGE_EXECUTE_WRITECOPY", true, true)]
    [InlineData(0, "PAGE_NOACCESS", false, false)]
    [InlineData(24, "PAGE_NOACCESS", false, false)]
    [InlineData(12, "PAGE_READWRITE|PAGE_NOCACHE", false, true)]
    [InlineData(17, "PAGE_READONLY|PAGE_GUARD", false, false)]
    [InlineData(30, "PAGE_EXECUTE_READWRITE|PAGE_WRITECOMBINE", true, true)]
    [InlineData(40, "(invalid protection 40)", false, false)]
    public void Protection_indices_decode_like_MmProtectToValue(int index, string name, bool executable, bool writable)
    {
        Assert.Equal((name, executable, writable), (WindowsProtection.Name(index), WindowsProtection.IsExecutable(index), WindowsProtection.IsWritable(index)));
        if (index < 32)
        {
            // The builder writes the kernel's table; the names agree with its PAGE_* values.
            uint value = WindowsImageBuilder.ProtectToValue[index];
            Assert.Equal(executable, (value & 0xF0) != 0);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Procdump_rebuilds_a_PE_with_the_headers_and_sections_in_memory(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory memory, WindowsKernel kernel) = Open(guid);
        using RunMappedMemory owned = memory;
        string outDir = _dir.File("out");
        Directory.CreateDirectory(outDir);

        var report = WindowsPeDump.ProcDump(kernel, outDir, new HashSet<long> { 844, 6044 });

        Assert.Empty(report.Notes);
        Assert.Equal(["pid.844.0x7ff71e400000.exe", "pid.6044.0x7ff71e400000.exe"], report.Rows.Select(r => r.File));
        foreach (WindowsPeDumpRow row in report.Rows)
        {
            WindowsLaidOutProcess p = built.Manifest.Processes.Single(x => x.Pid == row.Pid);
            AssertSameImage(kernel.ProcessSpace(p.Dtb), p.ImageBase, Path.Combine(outDir, row.File!));
            Assert.Equal((0L, "written", (string?)null, 2), (row.ZeroFilledPages, row.Result, row.Fixes, row.Sections));
        }

        // Again: nothing is overwritten.
        byte[] before = File.ReadAllBytes(Path.Combine(outDir, "pid.844.0x7ff71e400000.exe"));
        File.WriteAllBytes(Path.Combine(outDir, "pid.844.0x7ff71e400000.exe"), [1, 2, 3]);
        var again = WindowsPeDump.ProcDump(kernel, outDir, new HashSet<long> { 844 });
        Assert.Equal("pid.844.0x7ff71e400000.exe exists: not overwritten", again.Rows.Single().Result);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(outDir, "pid.844.0x7ff71e400000.exe")));
        Assert.True(before.Length > 3);
    }

    [SkippableFact]
    public void Dlldump_writes_the_hidden_dll_and_fills_missing_pages_with_zeros()
    {
        (WindowsAttackImages.Built built, RunMappedMemory file, WindowsKernel clean) = Open(WindowsPsListTests.Win10);
        using RunMappedMemory owned = file;
        WindowsLaidOutProcess word = built.Manifest.Processes.Single(p => p.Pid == 5120);
        LaidOutModule evil = word.Modules.Single(m => m.Name == "evil.dll");
        // The .text page of evil.dll is not present (paged out); its FileAlignment is broken in memory.
        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(PteAddress(built.Builder.Image, word.Dtb, evil.Base + PeImageBuilder.TextRva), 0);
        Assert.True(clean.ProcessSpace(word.Dtb).TryTranslate(evil.Base, out Translation header, out _));
        overlay.Patch(header.PhysicalAddress + PeImageBuilder.OptionalHeader + 36, BitConverter.GetBytes(0x123u));
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([built.Root]));
        string outDir = _dir.File("dll");
        Directory.CreateDirectory(outDir);

        var report = WindowsPeDump.DllDump(kernel, outDir, new HashSet<long> { 5120 }, evil.Base);

        WindowsPeDumpRow row = Assert.Single(report.Rows);
        output.WriteLine(string.Join(" | ", row));
        Assert.Equal(("pid.5120.0x7ffba0800000.dll", "evil.dll", 1L, "written"), (row.File, row.Name, row.ZeroFilledPages, row.Result));
        Assert.Equal("FileAlignment 0x123 -> 0x200", row.Fixes);
        byte[] dll = File.ReadAllBytes(Path.Combine(outDir, row.File!));
        using var pe = new PEReader(new MemoryStream(dll));
        SectionHeader text = pe.PEHeaders.SectionHeaders.Single(s => s.Name == ".text");
        Assert.Equal(0x200, pe.PEHeaders.PEHeader!.FileAlignment);
        Assert.All(dll.AsSpan(text.PointerToRawData, text.SizeOfRawData).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(evil.Base, pe.PEHeaders.PEHeader.ImageBase);

        // Every DLL of the process without --base; the executable is not among them.
        string allDir = _dir.File("all");
        Directory.CreateDirectory(allDir);
        var all = WindowsPeDump.DllDump(kernel, allDir, new HashSet<long> { 5120 });
        Assert.Equal(word.Modules.Skip(1).Select(m => m.Base), all.Rows.Select(r => r.Base));
    }

    /// <summary>The output parses as a PE whose headers and section contents are the image's in memory.</summary>
    private static void AssertSameImage(AddressSpace space, ulong imageBase, string path)
    {
        byte[] mapped = new byte[0x3000];
        Assert.Equal(mapped.Length, space.Read(imageBase, mapped));
        using var inMemory = new PEReader(new MemoryStream(mapped), PEStreamOptions.IsLoadedImage);
        byte[] file = File.ReadAllBytes(path);
        using var rebuilt = new PEReader(new MemoryStream(file));
        PEHeaders a = inMemory.PEHeaders, b = rebuilt.PEHeaders;
        Assert.Equal((a.CoffHeader.Machine, a.CoffHeader.Characteristics, a.PEHeader!.ImageBase, a.PEHeader.SizeOfImage, a.PEHeader.AddressOfEntryPoint, a.PEHeader.FileAlignment),
            (b.CoffHeader.Machine, b.CoffHeader.Characteristics, b.PEHeader!.ImageBase, b.PEHeader.SizeOfImage, b.PEHeader.AddressOfEntryPoint, b.PEHeader.FileAlignment));
        Assert.Equal(a.SectionHeaders.Select(s => (s.Name, s.VirtualAddress, s.VirtualSize, s.PointerToRawData, s.SizeOfRawData)),
            b.SectionHeaders.Select(s => (s.Name, s.VirtualAddress, s.VirtualSize, s.PointerToRawData, s.SizeOfRawData)));
        foreach (SectionHeader s in b.SectionHeaders)
        {
            Assert.Equal(mapped.AsSpan(s.VirtualAddress, s.SizeOfRawData).ToArray(), file.AsSpan(s.PointerToRawData, s.SizeOfRawData).ToArray());
        }
        Assert.Equal(WindowsImageBuilder.ModuleCode, file.AsSpan(PeImageBuilder.TextRawOffset, WindowsImageBuilder.ModuleCode.Length).ToArray());
    }

    /// <summary>Physical address of the 4 KiB PTE mapping <paramref name="va"/> in the builder's page tables.</summary>
    private static ulong PteAddress(PhysicalImage image, ulong pml4, ulong va)
    {
        ulong table = pml4;
        for (int shift = 39; shift > 12; shift -= 9)
        {
            table = image.Get64(table + ((va >> shift) & 0x1FF) * 8) & 0x000FFFFFFFFFF000;
        }
        return table + ((va >> 12) & 0x1FF) * 8;
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    public void A_cyclic_vad_tree_gives_partial_rows_and_a_note(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory file, WindowsKernel clean) = Open(guid);
        using RunMappedMemory owned = file;
        WindowsLaidOutProcess ps = built.Manifest.Processes.Single(p => p.Pid == 6044);
        var sorted = ps.Regions.OrderBy(r => r.Start).ToList();
        // The last node (no right child) points right back at the root.
        LaidOutRegion last = sorted[^1];
        var clean6044 = WindowsVadPlugins.VadInfo(clean, new HashSet<long> { 6044 }).Rows;
        ulong root = sorted[sorted.Count / 2].Vad;
        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(Physical(clean, last.Vad + (ulong)RightOffset(clean)), root);
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([built.Root]));

        var report = WindowsVadPlugins.VadInfo(kernel, new HashSet<long> { 6044 });

        output.WriteLine(string.Join("\n", report.Notes));
        Assert.Contains(report.Notes, n => n.Contains("seen before (cycle)", StringComparison.Ordinal));
        Assert.Equal(clean6044.Select(r => r.Start), report.Rows.Select(r => r.Start));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win11)]
    [InlineData(WindowsPsListTests.Win7)]
    public void Garbage_node_pointers_give_partial_rows_and_notes(string guid)
    {
        (WindowsAttackImages.Built built, RunMappedMemory file, WindowsKernel clean) = Open(guid);
        using RunMappedMemory owned = file;
        WindowsLaidOutProcess ps = built.Manifest.Processes.Single(p => p.Pid == 6044);
        var sorted = ps.Regions.OrderBy(r => r.Start).ToList();
        LaidOutRegion rootRegion = sorted[sorted.Count / 2];
        using var overlay = new OverlayMemory(file);
        // The root's left child is a user-space pointer, its right child an unmapped kernel address.
        overlay.PatchUInt64(Physical(clean, rootRegion.Vad + (ulong)LeftOffset(clean)), 0x0000_1234_5678_9AB0);
        overlay.PatchUInt64(Physical(clean, rootRegion.Vad + (ulong)RightOffset(clean)), 0xFFFF_C000_0000_1000);
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([built.Root]));

        var vadinfo = WindowsVadPlugins.VadInfo(kernel, new HashSet<long> { 6044 });
        var malfind = WindowsVadPlugins.Malfind(kernel, new HashSet<long> { 6044 });
        var ldr = WindowsVadPlugins.LdrModules(kernel, new HashSet<long> { 6044 });

        output.WriteLine(string.Join("\n", vadinfo.Notes.Concat(ldr.Notes)));
        Assert.Equal([rootRegion.Start], vadinfo.Rows.Select(r => r.Start));
        Assert.Contains(vadinfo.Notes, n => n.Contains("bad VAD pointer 0x123456789AB0", StringComparison.Ordinal));
        Assert.Contains(vadinfo.Notes, n => n.Contains("VAD 0xFFFFC00000001000 does not read", StringComparison.Ordinal));
        Assert.Equal(2, malfind.Notes.Count);
        // Loader entries whose VAD was lost are noted, not dropped silently.
        Assert.Contains(ldr.Notes, n => n.Contains("has no VAD starting there", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void A_vad_with_an_impossible_range_is_skipped_with_a_note()
    {
        (WindowsAttackImages.Built built, RunMappedMemory file, WindowsKernel clean) = Open(WindowsPsListTests.Win10);
        using RunMappedMemory owned = file;
        WindowsLaidOutProcess ps = built.Manifest.Processes.Single(p => p.Pid == 5120);
        LaidOutRegion root = ps.Regions.OrderBy(r => r.Start).ToList()[ps.Regions.Count / 2];
        Assert.True(clean.Types.TryGetOffset("_MMVAD_SHORT", "EndingVpn", out int endOff));
        using var overlay = new OverlayMemory(file);
        overlay.Patch(Physical(clean, root.Vad + (ulong)endOff), BitConverter.GetBytes(1u));     // ends before it starts
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([built.Root]));

        var report = WindowsVadPlugins.VadInfo(kernel, new HashSet<long> { 5120 });

        Assert.Empty(report.Rows);
        Assert.Contains("impossible range", Assert.Single(report.Notes));
    }

    private static ulong Physical(WindowsKernel kernel, ulong va)
    {
        Assert.True(kernel.Kernel.TryTranslate(va, out Translation t, out _));
        return t.PhysicalAddress;
    }

    private static int LeftOffset(WindowsKernel k)
        => k.Types.TryGetOffset("_MMVAD_SHORT", "VadNode.Left", out int o) || k.Types.TryGetOffset("_MMVAD_SHORT", "LeftChild", out o) ? o : throw new InvalidOperationException();

    private static int RightOffset(WindowsKernel k)
        => k.Types.TryGetOffset("_MMVAD_SHORT", "VadNode.Right", out int o) || k.Types.TryGetOffset("_MMVAD_SHORT", "RightChild", out o) ? o : throw new InvalidOperationException();

    [SkippableFact]
    public void Cli_plugins_print_json_and_dump_files()
    {
        WindowsAttackImages.Built built = images.Get(WindowsPsListTests.Win11);
        var env = new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") };

        (int exit, string stdout, string stderr) = CliRunner.Run(env, null, "windows.malfind", built.Raw, "--symbols", built.Root, "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(3, doc.RootElement.GetProperty("rows").GetArrayLength());
            Assert.Equal("MZ header; writable and executable; private memory", doc.RootElement.GetProperty("rows")[0].GetProperty("notes").GetString());
        }

        (exit, stdout, stderr) = CliRunner.Run(env, null, "windows.vadinfo", built.Raw, "--symbols", built.Root, "--pid", "5120", "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument doc = JsonDocument.Parse(stdout))
        {
            Assert.Equal(built.Manifest.Processes.Single(p => p.Pid == 5120).Regions.Count, doc.RootElement.GetProperty("rows").GetArrayLength());
        }

        (exit, stdout, stderr) = CliRunner.Run(env, null, "windows.hollowfind", built.Raw, "--symbols", built.Root);
        Assert.True(exit == 0, stderr);
        Assert.Contains("NotImage", stdout);
        Assert.Contains("PathMismatch", stdout);

        (exit, stdout, stderr) = CliRunner.Run(env, null, "windows.ldrmodules", built.Raw, "--symbols", built.Root, "--pid", "5120");
        Assert.True(exit == 0, stderr);
        Assert.Contains("image mapped but on no loader list", stdout);

        string outDir = _dir.File("cli-out");
        Directory.CreateDirectory(outDir);
        (exit, stdout, stderr) = CliRunner.Run(env, null, "windows.dlldump", built.Raw, "--symbols", built.Root, "--pid", "5120", "--base", "0x7ffba0800000", "--out", outDir);
        Assert.True(exit == 0, stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "pid.5120.0x7ffba0800000.dll")), stdout);
        (exit, _, stderr) = CliRunner.Run(env, null, "windows.procdump", built.Raw, "--symbols", built.Root, "--pid", "844", "--out", Path.Combine(outDir, "missing"));
        Assert.Equal(2, exit);
        Assert.StartsWith("cloudmem: error: ", stderr);
        Assert.Contains("does not exist", stderr);
        (exit, _, stderr) = CliRunner.Run(env, null, "windows.procdump", built.Raw, "--symbols", built.Root, "--pid", "844");
        Assert.NotEqual(0, exit);
        Assert.Contains("--out DIR is required", stderr);
        (exit, _, stderr) = CliRunner.Run(env, null, "windows.dlldump", built.Raw, "--symbols", built.Root, "--base", "zz", "--out", outDir);
        Assert.NotEqual(0, exit);
        Assert.Contains("is not an address", stderr);
    }
}
