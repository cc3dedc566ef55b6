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

        var progress = new RecordingProgress();
        var report = WindowsPoolScanner.PsScan(kernel, default, progress);
        var rows = report.Rows;
        // The scan reports its progress over the bytes of the non-zero runs, from 0 to all of them, never going back.
        long scanned = memory.Runs.Where(r => r.Storage != RunStorage.Zero).Sum(r => (long)(r.End - r.PhysicalAddress));
        Assert.True(scanned > 0);
        Assert.All(progress.Reports, r => Assert.Equal((WindowsPoolScanner.ProgressStage, scanned), (r.Stage, r.Total)));
        Assert.Equal(0, progress.Reports[0].Done);
        Assert.Equal(scanned, progress.Reports[^1].Done);
        Assert.True(progress.Reports.Zip(progress.Reports.Skip(1)).All(p => p.First.Done <= p.Second.Done));
        foreach (WindowsScannedProcess r in rows)
        {
            output.WriteLine($"0x{r.Offset:X} {r.Pid,5} {r.Ppid,5} {r.ImageFileName,-16} {r.CreateTime} {r.OnList}");
        }

        Assert.Empty(report.Notes);
        var expected = manifest.Processes.Select(p => (p.Physical, (long)p.Pid, (long)p.Ppid, p.ImageFileName, true))
            .Concat(manifest.Unlinked.Select(p => (p.Physical, (long)p.Pid, (long)p.Ppid, p.ImageFileName, false)))
            .OrderBy(x => x.Item1);
        Assert.Equal(expected, rows.Select(r => (r.Offset, r.Pid, r.Ppid, r.ImageFileName, r.OnList)).OrderBy(x => x.Offset));
        WindowsScannedProcess evil = Assert.Single(rows, r => !r.OnList);
        Assert.Equal((6664L, "evil.exe", (DateTimeOffset?)new DateTimeOffset(2024, 7, 7, 10, 15, 0, TimeSpan.Zero)), (evil.Pid, evil.ImageFileName, evil.CreateTime));
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

    private sealed class RecordingProgress : CloudMem.Engine.Core.IProgressSink
    {
        public List<(string Stage, long Done, long Total)> Reports { get; } = [];

        public void Report(string stage, long done, long total)
        {
            lock (Reports)
            {
                Reports.Add((stage, done, total));
            }
        }
    }
}
