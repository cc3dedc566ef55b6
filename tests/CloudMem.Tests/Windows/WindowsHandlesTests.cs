using System.Text.Json;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.handles and the object manager view on the attack scenario laid out with the Windows 10 19041, Windows 7 SP1
/// and Windows 11 22000 ISFs: rows equal the builder's manifest; the header cookie; mutated handle tables.
/// </summary>
public sealed class WindowsHandlesTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The attack scenario laid out as a raw file (a fresh one per call, for mutation tests).</summary>
    internal static (string Raw, string Root, WindowsImageManifest Manifest, TypeModel Types) BuildAttack(TempDir dir, string guid, Func<TypeModel, WindowsImageBuilder>? make = null)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        WindowsImageBuilder builder = make?.Invoke(types) ?? new WindowsImageBuilder(types, guid, 1);
        (byte[] image, WindowsImageManifest manifest) = builder.Build(WindowsImageBuilder.AttackScenario());
        return (dir.Write($"attack-{guid}-{Guid.NewGuid():N}.raw", image), root, manifest, types);
    }

    private static IEnumerable<(long, ulong, ulong, string?, uint, string?)> Expected(WindowsImageManifest manifest)
        => manifest.Processes.SelectMany(p => p.Handles.Select(h =>
            ((long)p.Pid, h.Object, (ulong)h.HandleValue, (string?)h.Type, (uint)h.GrantedAccess, h.Name)));

    private static IEnumerable<(long, ulong, ulong, string?, uint, string?)> Actual(IEnumerable<WindowsHandle> rows)
        => rows.Select(r => (r.Pid, r.Offset, r.HandleValue, r.Type, r.GrantedAccess, r.Name));

    private void Print(IEnumerable<WindowsHandle> rows, IEnumerable<string> notes)
    {
        foreach (WindowsHandle r in rows)
        {
            output.WriteLine($"{r.Pid,5} {r.Process,-15} 0x{r.Offset:X} 0x{r.HandleValue,-5:X} {r.Type,-8} 0x{r.GrantedAccess,-9:X} {r.Name}");
        }
        foreach (string note in notes)
        {
            output.WriteLine("note: " + note);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Handles_equal_the_manifest(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildAttack(_dir, guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        var report = WindowsHandles.Handles(kernel);

        Print(report.Rows, report.Notes);
        Assert.Empty(report.Notes);
        Assert.Equal(Expected(manifest), Actual(report.Rows));
        Assert.Equal(5, report.Rows.Count);
        Assert.Contains(report.Rows, r => r is { Pid: 5120, Type: "File", Name: @"\Device\HarddiskVolume3\Users\alice\Downloads\invoice.docm" });
        Assert.Contains(report.Rows, r => r is { Pid: 5120, Type: "Key", Name: @"\REGISTRY\USER\S-1-5-21-1004336348-1177238915-682003330-1001\SOFTWARE\Microsoft\Office" });
        Assert.Contains(report.Rows, r => r is { Pid: 6044, Type: "Mutant", Name: @"\Sessions\1\BaseNamedObjects\Global\m0x41" });
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    public void A_level_1_table_is_walked_and_the_pid_filter_applies(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildAttack(_dir, guid, t => new WindowsImageBuilder(t, guid, 1) { HandleTableLevel = 1 });
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        var report = WindowsHandles.Handles(kernel, new HashSet<long> { 5120 });

        Print(report.Rows, report.Notes);
        Assert.Empty(report.Notes);
        Assert.Equal(Expected(manifest).Where(e => e.Item1 == 5120), Actual(report.Rows));
        Assert.Equal([0x404UL, 0x408UL, 0x40CUL], report.Rows.Select(r => r.HandleValue));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Object_types_and_the_header_cookie_are_read_from_the_kernel(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, TypeModel types) = BuildAttack(_dir, guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        WindowsObjectManager objects = WindowsObjectManager.Open(kernel);

        Assert.Empty(objects.Notes);
        Assert.Equal(WindowsImageBuilder.ObjectTypeNames, Enumerable.Range(2, WindowsImageBuilder.ObjectTypeNames.Count).Select(i => objects.Types[i]));
        bool hasCookie = types.Symbols.ContainsKey("ObHeaderCookie");
        Assert.Equal(guid != WindowsPsListTests.Win7, hasCookie);
        Assert.Equal(hasCookie ? (byte?)0x6D : null, objects.Cookie);
        Assert.Equal(objects.Cookie, objects.StoredCookie);
        foreach (WindowsLaidOutProcess p in manifest.AllProcesses)
        {
            Assert.True(objects.TryReadHeaderOfBody(p.Address, out ObjectHeader header));
            Assert.Equal(("Process", 7), (header.TypeName, header.TypeIndex));
            Assert.Equal(0x08, header.InfoMask);                         // quota info
            Assert.Equal(header.Address - 0x20, objects.OptionalHeader(header, 3));
        }

        // ObpInfoMaskToOffset as the builder wrote it into the kernel image agrees with the rule computed from the ISF sizes.
        Assert.True(kernel.TryGetSymbol("ObpInfoMaskToOffset", out ulong table));
        byte[] written = new byte[1 << objects.OptionalHeaderSizes.Count];
        Assert.Equal(written.Length, kernel.Kernel.Read(table, written));
        for (int mask = 0; mask < written.Length; mask++)
        {
            for (int bit = 0; bit < objects.OptionalHeaderSizes.Count; bit++)
            {
                int offset = WindowsObjectManager.OptionalHeaderOffset(objects.OptionalHeaderSizes, (byte)mask, bit);
                Assert.Equal((mask & (1 << bit)) == 0 ? -1 : written[mask & ((1 << (bit + 1)) - 1)], offset);
            }
        }
        Assert.Equal(guid == WindowsPsListTests.Win7 ? 5 : 8, objects.OptionalHeaderSizes.Count);
    }

    [Fact]
    public void The_type_index_decodes_with_the_right_cookie_only()
    {
        const ulong header = 0xFFFFA50C1234B2B0;
        byte stored = (byte)(7 ^ 0x6D ^ 0xB2);

        Assert.Equal(7, WindowsObjectManager.DecodeTypeIndex(header, stored, 0x6D));
        Assert.Equal(7 ^ 0x6D ^ 0x12, WindowsObjectManager.DecodeTypeIndex(header, stored, 0x12));
        Assert.Equal(7 ^ 0xB2 ^ 0xB3, WindowsObjectManager.DecodeTypeIndex(header + 0x100, stored, 0x6D));   // the header address is part of the key
        Assert.Equal(stored, WindowsObjectManager.DecodeTypeIndex(header, stored, null));          // Windows 7: stored as is
        Assert.Equal(0x40, WindowsObjectManager.OptionalHeaderOffset([0x20, 0x20, 0x10, 0x20], 0x0A, 3));
        Assert.Equal(0x60, WindowsObjectManager.OptionalHeaderOffset([0x20, 0x20, 0x10, 0x20], 0x0B, 3));
        Assert.Equal(0x20, WindowsObjectManager.OptionalHeaderOffset([0x20, 0x20, 0x10, 0x20], 0x0A, 1));
        Assert.Equal(-1, WindowsObjectManager.OptionalHeaderOffset([0x20, 0x20, 0x10, 0x20], 0x08, 1));
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win11)]
    public void A_wrong_cookie_is_detected_and_recovered_from_the_process_headers(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildAttack(_dir, guid);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(clean.TryGetSymbol("ObHeaderCookie", out ulong cookie));
        Assert.True(clean.Kernel.TryTranslate(cookie, out var translation, out _));
        using var overlay = new OverlayMemory(file);
        overlay.Patch(translation.PhysicalAddress, [0x12]);
        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([root]));

        // Decoded with the cookie as stored, the listed processes' headers are not processes.
        WindowsObjectManager objects = WindowsObjectManager.Open(kernel);
        Assert.Equal((byte?)0x12, objects.StoredCookie);
        Assert.Equal((byte?)0x6D, objects.Cookie);
        string note = Assert.Single(objects.Notes);
        output.WriteLine(note);
        Assert.Equal($"ObHeaderCookie (0x12) decodes only 0 of {manifest.Processes.Count} listed processes' object headers as Process; 0x6D decodes {manifest.Processes.Count}: using 0x6D", note);
        Assert.True(WindowsObjectManager.Open(clean).TryReadHeaderOfBody(manifest.Processes[0].Address, out ObjectHeader system));
        Assert.Equal(7, system.TypeIndex);
        Assert.NotEqual(7, WindowsObjectManager.DecodeTypeIndex(system.Address, system.StoredTypeIndex, 0x12));

        var report = WindowsHandles.Handles(kernel);
        Assert.Equal(Expected(manifest), Actual(report.Rows));
        Assert.Equal([note], report.Notes);
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    public void Garbage_handle_table_pointers_give_partial_rows_and_notes(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, TypeModel types) = BuildAttack(_dir, guid);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(types.TryGetOffset("_EPROCESS", "ObjectTable", out int objectTable));
        Assert.True(types.TryGetOffset("_HANDLE_TABLE", "TableCode", out int tableCode));
        WindowsLaidOutProcess word = manifest.Processes.Single(p => p.Pid == 5120);
        WindowsLaidOutProcess shell = manifest.Processes.Single(p => p.Pid == 6044);
        ulong Physical(ulong va) => clean.Kernel.TryTranslate(va, out var t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
        Assert.True(clean.Kernel.TryReadUInt64(shell.Address + (ulong)objectTable, out ulong shellTable));

        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(Physical(word.Address + (ulong)objectTable), 0xFFFFB00000000010);      // unmapped
        overlay.PatchUInt64(Physical(shellTable + (ulong)tableCode), 0x00007FF000000003);           // user address, level 3

        var report = WindowsHandles.Handles(WindowsKernel.Open(overlay, new SymbolStore([root])));

        Print(report.Rows, report.Notes);
        Assert.Empty(report.Rows);
        Assert.Equal(2, report.Notes.Count);
        Assert.Equal("pid 5120 (WINWORD.EXE): handle table 0xFFFFB00000000010 does not read (NotPresent); its handles are not listed", report.Notes[0]);
        Assert.Contains("pid 6044 (powershell.exe)", report.Notes[1]);
        Assert.Contains("level 3", report.Notes[1]);

        // A level-0 page pointer that is not a kernel address: the process's other data still lists.
        using var page = new OverlayMemory(file);
        page.PatchUInt64(Physical(shellTable + (ulong)tableCode), 0x0000000012345000);
        report = WindowsHandles.Handles(WindowsKernel.Open(page, new SymbolStore([root])));
        Assert.Equal(Expected(manifest).Where(e => e.Item1 == 5120), Actual(report.Rows));
        Assert.Equal("pid 6044 (powershell.exe): level-0 handle table page 0x12345000 does not read (not a kernel address); handles from 0x0 skipped", Assert.Single(report.Notes));

        // A handle entry pointing at an unmapped object header is counted, not listed.
        using var entry = new OverlayMemory(file);
        Assert.True(clean.Kernel.TryReadUInt64(shellTable + (ulong)tableCode, out ulong code));
        entry.PatchUInt64(Physical((code & ~7UL) + 16), guid == WindowsPsListTests.Win7 ? 0xFFFFB00000000011 : 0xB000000000100001);   // header 0xFFFFB00000000010
        report = WindowsHandles.Handles(WindowsKernel.Open(entry, new SymbolStore([root])));
        Assert.Equal(Expected(manifest).Where(e => e.Item1 == 5120 || e.Item3 == 0x8), Actual(report.Rows));   // powershell's 0x4 is gone
        Assert.Equal("pid 6044 (powershell.exe): 1 handle entries point at object headers that do not read", Assert.Single(report.Notes));
    }

    [SkippableFact]
    public void Handles_command_filters_by_pid()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = BuildAttack(_dir, WindowsPsListTests.Win10);

        (int exit, string stdout, string stderr) = CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null,
            "windows.handles", raw, "--symbols", root, "--pid", "6044", "--output", "json");

        Assert.True(exit == 0, stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement[] rows = json.RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(manifest.Processes.Single(p => p.Pid == 6044).Handles.Select(h => h.Type), rows.Select(r => r.GetProperty("type").GetString()));
        Assert.All(rows, r => Assert.Equal(6044, r.GetProperty("pid").GetInt64()));
        Assert.Equal("0x4", rows[0].GetProperty("handleValue").GetString());
        Assert.Equal(@"\Sessions\1\BaseNamedObjects\Global\m0x41", rows[0].GetProperty("name").GetString());
        Assert.Equal("0x1F0003", rows[0].GetProperty("grantedAccess").GetString());
    }
}
