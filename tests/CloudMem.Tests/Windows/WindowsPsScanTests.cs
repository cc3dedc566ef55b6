using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>windows.psscan on the synthetic images: pool-tag scan finds listed and unlinked processes.</summary>
public sealed class WindowsPsScanTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Scan_finds_every_process_and_the_unlinked_one(string guid)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        IReadOnlyList<WindowsScenarioProcess> scenario =
        [
            .. WindowsImageBuilder.TypicalScenario(),
            new(6664, 5120, "evil.exe", new DateTime(2024, 7, 7, 10, 15, 0, DateTimeKind.Utc), Unlinked: true),
        ];
        (byte[] image, WindowsImageManifest manifest) = new WindowsImageBuilder(types, guid, 1).Build(scenario);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write($"scan-{guid}.raw", image));
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));

        var report = WindowsPoolScanner.PsScan(kernel);
        var rows = report.Rows;
        foreach (WindowsScannedProcess r in rows)
        {
            output.WriteLine($"{r.Offset} {r.Pid,5} {r.Ppid,5} {r.ImageFileName,-16} {r.CreateTime} {r.OnList}");
        }

        Assert.Empty(report.Notes);
        var expected = manifest.Processes.Select(p => ($"0x{p.Physical:X}", (long)p.Pid, (long)p.Ppid, p.ImageFileName, true))
            .Concat(manifest.Unlinked.Select(p => ($"0x{p.Physical:X}", (long)p.Pid, (long)p.Ppid, p.ImageFileName, false)))
            .OrderBy(x => x.Item1, StringComparer.Ordinal);
        Assert.Equal(expected, rows.Select(r => (r.Offset, r.Pid, r.Ppid, r.ImageFileName, r.OnList)).OrderBy(x => x.Offset, StringComparer.Ordinal));
        WindowsScannedProcess evil = Assert.Single(rows, r => !r.OnList);
        Assert.Equal((6664L, "evil.exe", "2024-07-07T10:15:00.0000000Z"), (evil.Pid, evil.ImageFileName, evil.CreateTime));
        Assert.DoesNotContain(WindowsProcesses.List(kernel).Processes, p => p.Pid == 6664);
        Assert.Equal(manifest.Processes.Count + 1, rows.Count);
    }

    [SkippableFact]
    public void A_pool_tag_before_garbage_is_not_a_process()
    {
        string guid = WindowsPsListTests.Win10;
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        (byte[] image, WindowsImageManifest manifest) = new WindowsImageBuilder(types, guid, 1).Build(WindowsImageBuilder.TypicalScenario());
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("garbage.raw", image));
        using var overlay = new OverlayMemory(memory);
        Assert.True(types.TryGetOffset("_EPROCESS", "ImageFileName", out int name));
        Assert.True(types.TryGetOffset("_EPROCESS", "Pcb", out int pcb));
        Assert.True(types.TryGetOffset("_KPROCESS", "DirectoryTableBase", out int dtb));
        // smss.exe: a non-printable name; csrss.exe: an unaligned DTB. Both keep their pool headers.
        overlay.PatchUInt64(manifest.Processes[1].Physical + (ulong)name, 0x0102030405060708);
        overlay.PatchUInt64(manifest.Processes[2].Physical + (ulong)(pcb + dtb), 0x1234567);

        var rows = WindowsPoolScanner.PsScan(WindowsKernel.Open(overlay, new SymbolStore([root]))).Rows;

        Assert.Equal(["System", "services.exe", "svchost.exe", "WINWORD.EXE", "powershell.exe"], rows.OrderBy(r => r.Pid).Select(r => r.ImageFileName));
    }
}
