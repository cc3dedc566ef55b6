using System.Text.Json;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>windows.modules and windows.modscan on the attack scenario (Windows 10/7/11 ISFs): the manifest's drivers, the unlinked one found by the scan only; a cyclic and a broken module list.</summary>
public sealed class WindowsModulesTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Modules_and_modscan_equal_the_manifest(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = WindowsHandlesTests.BuildAttack(_dir, guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        var modules = WindowsModules.Modules(kernel);
        var scanned = WindowsModules.ModScan(kernel);

        foreach (WindowsScannedModule m in scanned.Rows)
        {
            output.WriteLine($"0x{m.Offset:X} 0x{m.Base:X} 0x{m.Size,-8:X} {m.Name,-13} {m.Path} {m.OnList}");
        }
        Assert.Empty(modules.Notes);
        Assert.Empty(scanned.Notes);
        Assert.Equal(
            manifest.Drivers.Where(d => d.OnList).Select(d => (d.Entry, d.Base, (uint)d.Size, (string?)d.Name, (string?)d.Path)),
            modules.Rows.Select(m => (m.Offset, m.Base, m.Size, m.Name, m.Path)));
        Assert.Equal(["ntoskrnl.exe", "hal.dll", "tcpip.sys"], modules.Rows.Select(m => m.Name));
        Assert.Equal(manifest.KernelBase, modules.Rows[0].Base);
        Assert.Equal(
            manifest.Drivers.Select(d => (d.Base, (uint)d.Size, d.Name, (string?)d.Path, d.OnList)).OrderBy(d => d.Item1),
            scanned.Rows.Select(m => (m.Base, m.Size, m.Name, m.Path, m.OnList)).OrderBy(d => d.Base));
        WindowsScannedModule rootkit = Assert.Single(scanned.Rows, m => !m.OnList);
        Assert.Equal(("rootkit.sys", @"\??\C:\Windows\Temp\rootkit.sys"), (rootkit.Name, rootkit.Path));
        Assert.True(kernel.Kernel.TryTranslate(manifest.Drivers.Single(d => d.Name == "rootkit.sys").Entry, out Translation t, out _));
        Assert.Equal(t.PhysicalAddress, rootkit.Offset);
        Assert.DoesNotContain(modules.Rows, m => m.Name == "rootkit.sys");

        // Each driver's PE header is mapped at its base.
        byte[] mz = new byte[2];
        Assert.All(manifest.Drivers, d => Assert.True(kernel.Kernel.Read(d.Base, mz) == 2 && mz[0] == 'M' && mz[1] == 'Z', d.Name));
    }

    [SkippableFact]
    public void A_cyclic_or_broken_module_list_gives_partial_rows_and_a_note()
    {
        (string raw, string root, WindowsImageManifest manifest, TypeModel types) = WindowsHandlesTests.BuildAttack(_dir, WindowsPsListTests.Win10);
        using RunMappedMemory file = CaptureOpener.Open(raw);
        WindowsKernel clean = WindowsKernel.Open(file, new SymbolStore([root]));
        Assert.True(types.TryGetOffset("_KLDR_DATA_TABLE_ENTRY", "InLoadOrderLinks", out int links));
        ulong Physical(ulong va) => clean.Kernel.TryTranslate(va, out var t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
        LaidOutDriver kernelEntry = manifest.Drivers[0], hal = manifest.Drivers[1];

        // hal.dll's Flink goes back to ntoskrnl.exe: ntoskrnl, hal, ntoskrnl, ...
        using var cyclic = new OverlayMemory(file);
        cyclic.PatchUInt64(Physical(hal.Entry + (ulong)links), kernelEntry.Entry + (ulong)links);
        WindowsKernel kernel = WindowsKernel.Open(cyclic, new SymbolStore([root]));
        var modules = WindowsModules.Modules(kernel);
        Assert.Equal(["ntoskrnl.exe", "hal.dll"], modules.Rows.Select(m => m.Name));
        Assert.Contains("list cycle", Assert.Single(modules.Notes));
        var scanned = WindowsModules.ModScan(kernel);
        Assert.Equal(4, scanned.Rows.Count);
        Assert.Equal(["rootkit.sys", "tcpip.sys"], scanned.Rows.Where(m => !m.OnList).Select(m => m.Name).Order());
        Assert.StartsWith("modules: list cycle", Assert.Single(scanned.Notes));

        // A garbage Flink: the walk stops there.
        using var broken = new OverlayMemory(file);
        broken.PatchUInt64(Physical(hal.Entry + (ulong)links), 0xFFFFB00000000010);
        modules = WindowsModules.Modules(WindowsKernel.Open(broken, new SymbolStore([root])));
        Assert.Equal(["ntoskrnl.exe", "hal.dll"], modules.Rows.Select(m => m.Name));
        Assert.Equal("list pointer at 0xFFFFB00000000010 does not read (NotPresent), after 2 modules; walk stopped", Assert.Single(modules.Notes));

        // A scanned entry whose name buffer is garbage is not a module.
        Assert.True(types.TryGetOffset("_KLDR_DATA_TABLE_ENTRY", "BaseDllName", out int baseName));
        using var garbage = new OverlayMemory(file);
        garbage.PatchUInt64(Physical(manifest.Drivers[3].Entry + (ulong)baseName + 8), 0xFFFFB00000000010);
        scanned = WindowsModules.ModScan(WindowsKernel.Open(garbage, new SymbolStore([root])));
        Assert.Equal(["ntoskrnl.exe", "hal.dll", "tcpip.sys"], scanned.Rows.Select(m => m.Name));
        Assert.Equal("1 'MmLd' allocations did not hold a plausible module entry", Assert.Single(scanned.Notes));
    }

    [SkippableFact]
    public void Modules_and_modscan_commands_print_their_rows()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = WindowsHandlesTests.BuildAttack(_dir, WindowsPsListTests.Win11);
        var environment = new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") };

        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, "windows.modules", raw, "--symbols", root, "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument json = JsonDocument.Parse(stdout))
        {
            Assert.Equal(manifest.Drivers.Where(d => d.OnList).Select(d => d.Name),
                json.RootElement.GetProperty("rows").EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        }

        (exit, stdout, stderr) = CliRunner.Run(environment, null, "windows.modscan", raw, "--symbols", root, "--output", "csv");
        Assert.True(exit == 0, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("table,Offset,Base,Size,Name,Path,OnList", lines[0].TrimEnd());
        Assert.Equal(manifest.Drivers.Count + 1, lines.Length);
        Assert.Contains(lines, l => l.Contains("rootkit.sys", StringComparison.Ordinal) && l.TrimEnd().EndsWith(",no", StringComparison.Ordinal));
    }
}
