using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.filescan on the attack scenario (its File handles' _FILE_OBJECTs in 'File' pool allocations, each with a
/// named device object) laid out with the Windows 10 19041, Windows 7 SP1 and Windows 11 22000 ISFs: every file object
/// laid out is found once, at the physical address of its virtual one, with the handle's name.
/// </summary>
public sealed class WindowsFileScanTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Filescan_finds_every_file_object_laid_out_with_its_name(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = WindowsHandlesTests.BuildAttack(_dir, guid);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([root]));
        var report = WindowsFileScan.FileScan(kernel);
        foreach (FileScanRow row in report.Rows)
        {
            output.WriteLine(row.ToString());
        }
        Assert.Empty(report.Notes);
        LaidOutHandle[] files = [.. manifest.AllProcesses.SelectMany(p => p.Handles).Where(h => h.Type == "File").DistinctBy(h => h.Object)];
        Assert.NotEmpty(files);
        ulong Physical(ulong va) => kernel.Kernel.TryTranslate(va, out Engine.Paging.Translation t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
        Assert.Equal(files.Select(f => (Physical(f.Object), f.Name)).OrderBy(f => f.Item1), report.Rows.Select(r => (r.Offset, r.Name)).OrderBy(r => r.Item1));
        Assert.All(report.Rows, r => Assert.Null(r.Doubt));
        Assert.All(report.Rows.Where(r => r.Name!.StartsWith(@"\Device\", StringComparison.Ordinal)), r => Assert.NotNull(r.Device));
    }
}
