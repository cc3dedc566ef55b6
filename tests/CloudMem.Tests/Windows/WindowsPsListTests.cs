using CloudMem.Engine.Core;
using System.Diagnostics;
using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// Windows kernel discovery (kernel image, ISF, DTB by its self-referencing PML4 entry, kernel VA) and windows.pslist on
/// synthetic raw images laid out with real ISF layouts (Windows 10 19041, Windows 7 SP1, Windows 11 22000).
/// </summary>
public sealed class WindowsPsListTests(ITestOutputHelper output) : IDisposable
{
    public const string Win10 = WindowsSymbols.Win10;
    public const string Win7 = WindowsSymbols.Win7;
    public const string Win11 = WindowsSymbols.Win11;

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (string Raw, string Root, WindowsImageManifest Manifest) Build(string guid, Func<TypeModel, WindowsImageBuilder>? make = null)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        WindowsImageBuilder builder = make?.Invoke(types) ?? new WindowsImageBuilder(types, guid, 1);
        (byte[] image, WindowsImageManifest manifest) = builder.Build(WindowsImageBuilder.TypicalScenario());
        return (_dir.Write($"win-{guid}.raw", image), root, manifest);
    }

    private static void AssertMatches(WindowsImageManifest manifest, IReadOnlyList<WindowsProcess> rows)
    {
        Assert.Equal(
            manifest.Processes.Select(p => (p.Address, (long)p.Pid, (long)p.Ppid, p.ImageFileName, (DateTimeOffset?)p.CreateTime, p.Dtb)),
            rows.Select(r => (r.Offset, r.Pid, r.Ppid, r.ImageFileName, r.CreateTime, r.Dtb)));
        Assert.All(rows, r => Assert.Equal(TimeSpan.Zero, r.CreateTime!.Value.Offset));
    }

    [SkippableTheory]
    [InlineData(Win10)]
    [InlineData(Win7)]
    [InlineData(Win11)]
    public void Discovers_the_kernel_and_lists_the_processes(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        var clock = Stopwatch.StartNew();

        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));
        (List<WindowsProcess> rows, List<string> notes) = WindowsProcesses.List(kernel);

        output.WriteLine($"{guid}: kernel 0x{kernel.KernelBase:X} (phys 0x{kernel.Image.PhysicalAddress:X}), DTB 0x{kernel.Dtb:X}, self-ref 0x{kernel.SelfRefIndex:X}, {rows.Count} processes in {clock.ElapsedMilliseconds} ms");
        Assert.Equal(guid, kernel.Image.Guid);
        Assert.EndsWith($"{guid}-1.json.xz", kernel.SymbolPath);
        Assert.Equal((manifest.Dtb, manifest.SelfRefIndex, manifest.KernelBase), (kernel.Dtb, kernel.SelfRefIndex, kernel.KernelBase));
        Assert.True(kernel.TryGetSymbol("PsActiveProcessHead", out ulong head));
        Assert.Equal(manifest.PsActiveProcessHead, head);
        Assert.Empty(notes);
        AssertMatches(manifest, rows);
        Assert.Equal(["System", "smss.exe", "csrss.exe", "services.exe", "svchost.exe", "WINWORD.EXE", "powershell.exe"], rows.Select(r => r.ImageFileName));
        Assert.Equal(5120, rows.Single(r => r.ImageFileName == "powershell.exe").Ppid);
    }

    [SkippableFact]
    public void Another_self_reference_index_and_kernel_address_are_found()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(Win10, t => new WindowsImageBuilder(t, Win10, 1)
        {
            SelfRefIndex = 0x1A3,                    // randomised since Windows 10 1607
            KernelBase = 0xFFFFF8067B600000,
            KernelPhysical = 0x1000000,
            Dtb = 0x3C5000,
        });
        using RunMappedMemory memory = CaptureOpener.Open(raw);

        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        Assert.Equal((0x3C5000ul, 0x1A3, 0xFFFFF8067B600000ul, 0x1000000ul), (kernel.Dtb, kernel.SelfRefIndex, kernel.KernelBase, kernel.Image.PhysicalAddress));
        AssertMatches(manifest, WindowsProcesses.List(kernel).Processes);
    }

    [SkippableTheory]
    [InlineData(Win10)]
    [InlineData(Win7)]
    [InlineData(Win11)]
    public void The_kernel_dtb_is_Systems_even_when_a_process_page_table_comes_first(string guid)
    {
        // System's PML4 near the top of memory: every process's PML4 (self-reference, kernel half) lies below it, so the
        // scan meets a process's page tables first; System's _KPROCESS.DirectoryTableBase must win.
        const long size = 64 << 20;
        (string raw, string root, WindowsImageManifest manifest) = Build(guid, t => new WindowsImageBuilder(t, guid, 1) { ImageSize = size, Dtb = (ulong)size - 0x8000, LowStub = null });
        Assert.Contains(manifest.Processes, p => p.Dtb < manifest.Dtb);
        using RunMappedMemory memory = CaptureOpener.Open(raw);

        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        Assert.Equal(manifest.Dtb, kernel.Dtb);
        Assert.StartsWith("System's DirectoryTableBase (the scan found process page tables at 0x", kernel.DtbSource);
        AssertMatches(manifest, WindowsProcesses.List(kernel).Processes);
    }

    [SkippableFact]
    public void The_usual_layout_is_confirmed_by_System()
    {
        (string raw, string root, _) = Build(Win10, t => new WindowsImageBuilder(t, Win10, 1) { LowStub = null });
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        Assert.Equal("self-referencing PML4 scan, confirmed: System's DirectoryTableBase", WindowsKernel.Open(memory, new SymbolStore([root])).DtbSource);
    }

    [SkippableFact]
    public void A_cyclic_list_terminates_with_a_note()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(Win10);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(clean.Types.TryGetOffset("_EPROCESS", "ActiveProcessLinks", out int links));
        // services.exe's Flink goes back to smss.exe: smss, csrss, services, smss, ...
        ulong flink = manifest.Processes[3].Address + (ulong)links;
        Assert.True(clean.Kernel.TryTranslate(flink, out var translation, out _));
        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(translation.PhysicalAddress, manifest.Processes[1].Address + (ulong)links);

        WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([root]));
        (List<WindowsProcess> rows, List<string> notes) = WindowsProcesses.List(kernel);

        Assert.Equal(["System", "smss.exe", "csrss.exe", "services.exe"], rows.Select(r => r.ImageFileName));
        string note = Assert.Single(notes);
        Assert.Contains("cycle", note);
        output.WriteLine(note);
    }

    [SkippableFact]
    public void A_bad_pointer_stops_the_walk_with_a_note()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(Win10);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(clean.Types.TryGetOffset("_EPROCESS", "ActiveProcessLinks", out int links));
        Assert.True(clean.Kernel.TryTranslate(manifest.Processes[1].Address + (ulong)links, out var translation, out _));
        using var overlay = new OverlayMemory(file);
        overlay.PatchUInt64(translation.PhysicalAddress, 0xFFFFB00000000010);   // unmapped kernel address

        (List<WindowsProcess> rows, List<string> notes) = WindowsProcesses.List(WindowsKernel.Open(overlay, new SymbolStore([root])));

        Assert.Equal(["System", "smss.exe"], rows.Select(r => r.ImageFileName));
        Assert.Contains("list pointer at 0xFFFFB00000000010 does not read", Assert.Single(notes));
        Assert.Contains("NotPresent", notes[0]);
    }

    [SkippableFact]
    public void Missing_symbols_and_missing_page_tables_are_explained_in_one_line()
    {
        (string raw, _, WindowsImageManifest manifest) = Build(Win10);
        using (RunMappedMemory memory = CaptureOpener.Open(raw))
        {
            var e = Assert.Throws<KernelNotFoundException>(() => WindowsKernel.Open(memory, new SymbolStore([_dir.File("nothing")])));
            Assert.StartsWith("no symbol table for the Windows kernel: ntkrnlmp.pdb " + Win10 + "-1", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
        (string root, _) = WindowsSymbols.Load(Win10);
        using (RunMappedMemory memory = CaptureOpener.Open(raw))
        {
            using var overlay = new OverlayMemory(memory);
            foreach (ulong dtb in manifest.Processes.Select(p => p.Dtb))
            {
                overlay.PatchUInt64(dtb + (ulong)manifest.SelfRefIndex * 8, 0);
            }
            var e = Assert.Throws<KernelNotFoundException>(() => WindowsKernel.Open(overlay, new SymbolStore([root])));
            Assert.Equal($"no page directory maps the kernel image at physical 0x{manifest.KernelPhysical:X}: no self-referencing PML4 page found", e.Message);

            // Self-references kept, but the kernel half no longer maps the kernel image: every candidate is rejected.
            using var unmapped = new OverlayMemory(memory);
            int kernelIndex = (int)((manifest.KernelBase >> 39) & 0x1FF);
            foreach (ulong dtb in manifest.Processes.Select(p => p.Dtb))
            {
                unmapped.PatchUInt64(dtb + (ulong)kernelIndex * 8, 0);
            }
            e = Assert.Throws<KernelNotFoundException>(() => WindowsKernel.Open(unmapped, new SymbolStore([root])));
            Assert.Equal($"no page directory maps the kernel image at physical 0x{manifest.KernelPhysical:X} (7 self-referencing PML4 candidates checked)", e.Message);
        }
    }

    [SkippableFact]
    public void Pslist_command_prints_the_processes()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(Win10);

        (int exit, string stdout, string stderr) = Cli("windows.pslist", raw, "--symbols", root, "--output", "json");

        Assert.True(exit == 0, stderr);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement[] rows = json.RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(manifest.Processes.Select(p => p.Pid), rows.Select(r => r.GetProperty("pid").GetInt32()));
        Assert.Equal("powershell.exe", rows[^1].GetProperty("imageFileName").GetString());
        Assert.Equal("2024-07-07T10:13:00.1234567Z", rows[^1].GetProperty("createTime").GetString());

        (exit, stdout, stderr) = Cli("windows.pslist", raw, "--symbols", _dir.File("nothing"));
        Assert.NotEqual(0, exit);
        Assert.Contains("no symbol table for the Windows kernel", stderr);
    }

    [SkippableFact]
    public void Pstree_and_psscan_commands_print_their_rows()
    {
        (string raw, string root, WindowsImageManifest manifest) = Build(Win10);

        (int exit, string stdout, string stderr) = Cli("windows.pstree", raw, "--symbols", root, "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument json = JsonDocument.Parse(stdout))
        {
            JsonElement[] rows = json.RootElement.GetProperty("rows").EnumerateArray().ToArray();
            JsonElement shell = rows.Single(r => r.GetProperty("pid").GetInt32() == 6044);
            Assert.Equal((1, "  powershell.exe"), (shell.GetProperty("depth").GetInt32(), shell.GetProperty("tree").GetString()));
            Assert.StartsWith("office-spawns-shell:", shell.GetProperty("suspicious").GetString());
        }

        (exit, stdout, stderr) = Cli("windows.psscan", raw, "--symbols", root, "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument json = JsonDocument.Parse(stdout))
        {
            JsonElement[] rows = json.RootElement.GetProperty("rows").EnumerateArray().ToArray();
            Assert.Equal(manifest.Processes.Select(p => p.Pid).Order(), rows.Select(r => r.GetProperty("pid").GetInt32()).Order());
            Assert.All(rows, r => Assert.True(r.GetProperty("onList").GetBoolean()));
        }
    }

    private (int Exit, string Out, string Err) Cli(params string[] args)
        => CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null, args);
}
