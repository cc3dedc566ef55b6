using CloudMem.Engine.Core;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Services;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.svcscan on the "registry" scenario's service database in services.exe (tcpip, EvilDll in svchost 844, a
/// stopped Fax, EvilSvc from %SystemRoot%\Temp), laid out in the record layout of each build (Windows 7 SP1's, 10
/// 19041's, which 11 22000 shares), against the manifest.
/// </summary>
public sealed class WindowsSvcScanTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Svcscan_lists_every_record_newest_first_as_laid_out(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        List<LaidOutService> truth = built.Manifest.Services!;
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsSvcScan.SvcScan(kernel);
            WindowsRegistryImages.Print(output, report);
            Assert.Empty(report.Notes);
            Assert.Equal(4, truth.Count);
            Assert.Equal(truth.AsEnumerable().Reverse().Select(s => (s.Record, s.Order, s.Pid, s.Start, s.State, s.Type, (string?)s.Name, (string?)s.DisplayName, s.Binary, 612L, (string?)null)),
                report.Rows.Select(r => (r.Offset, r.Order, r.Pid, r.Start, r.State, r.Type, r.Name, r.DisplayName, r.Binary, r.ScmPid, r.Doubt)));
            ServiceRow evil = Assert.Single(report.Rows, r => r.Name == "EvilSvc");
            Assert.Equal(((long?)1288, @"C:\Windows\Temp\evilsvc.exe", ServiceState.Running), (evil.Pid, evil.Binary, evil.State));
            Assert.Null(Assert.Single(report.Rows, r => r.Name == "Fax").Binary);
        }
    }

    [SkippableFact]
    public void A_record_whose_name_does_not_read_keeps_its_row_with_a_doubt_and_a_broken_chain_ends_the_walk()
    {
        WindowsRegistryImages.Built built = images.Get(WindowsSymbols.Win10);
        List<LaidOutService> truth = built.Manifest.Services!;
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory file);
        using (file)
        {
            WindowsLaidOutProcess scm = built.Manifest.Processes.Single(p => p.ImageFileName == "services.exe");
            var space = kernel.ProcessSpace(scm.Dtb);
            ServiceRecordLayout layout = ServiceRecordLayouts.Find(10, 0, 19041)!.Layout;
            using var patched = new OverlayMemory(file);
            // The newest record (EvilSvc) gets a name pointer into unmapped memory; Fax's state becomes 9 (invalid), so the walk stops there.
            Assert.True(space.TryTranslate(truth[3].Record + (ulong)layout.ServiceName, out Engine.Paging.Translation name, out _));
            patched.PatchUInt64(name.PhysicalAddress, 0x00000000DEAD0000);
            Assert.True(space.TryTranslate(truth[2].Record + (ulong)layout.State, out Engine.Paging.Translation state, out _));
            patched.PatchUInt64(state.PhysicalAddress, 9);
            var report = WindowsSvcScan.SvcScan(WindowsKernel.Open(patched, new Engine.Symbols.SymbolStore([built.Root])));
            WindowsRegistryImages.Print(output, report);
            ServiceRow row = Assert.Single(report.Rows);
            Assert.Equal((truth[3].Record, (string?)null, "Windows Update Helper"), (row.Offset, row.Name, row.DisplayName));
            Assert.Equal("service name at 0xDEAD0000 does not read", row.Doubt);
        }
    }

    [Fact]
    public void A_build_outside_the_table_is_refused_with_the_ranges()
    {
        var error = Assert.Throws<KernelNotFoundException>(() => ServiceRecordLayouts.Require(new Engine.Windows.Network.WindowsVersion(5, 2, 3790, "test")));
        Assert.StartsWith("no service record layout for Windows 5.2.3790 (test); the layout table covers 6.0.6000-6002 (Vista / Server 2008), 6.1.7600-7601", error.Message, StringComparison.Ordinal);
        Assert.Equal("win8", ServiceRecordLayouts.Find(10, 0, 14393)!.Layout.Name);
        Assert.Equal("19041", ServiceRecordLayouts.Find(10, 0, 22000)!.Layout.Name);
        Assert.Null(ServiceRecordLayouts.Find(10, 0, 16000));
    }
}
