using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Files;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.dumpfiles on the "registry" scenario's cached evilsvc.log (four pages through its data section's prototype
/// PTEs: two valid, one paged out, one on the standby list), against the content the builder wrote, on Windows 7/10/11.
/// </summary>
public sealed class WindowsDumpFilesTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Dumpfiles_writes_the_cached_pages_byte_identical_and_lists_the_missing_one(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        LaidOutCachedFile truth = Assert.Single(built.Manifest.CachedFiles!);
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            using var dir = new TempDir();
            var report = WindowsDumpFiles.DumpFiles(kernel, dir.Path, fileObject: truth.FileObject);
            WindowsRegistryImages.Print(output, report);
            Assert.Empty(report.Notes);
            DumpFileRow row = Assert.Single(report.Rows);
            Assert.Equal((truth.FileObject, (string?)RegistryScenario.CachedFileName, "DataSectionObject", truth.ControlArea, (long)truth.Content.Length, 3, 1, (string?)"0x2000", (string?)null),
                (row.FileObject, row.FileName, row.Section, row.ControlArea, row.Bytes, row.PagesWritten, row.PagesMissing, row.MissingOffsets, row.Doubt));
            Assert.Equal([8192L], truth.MissingOffsets);
            byte[] written = File.ReadAllBytes(row.OutputFile!);
            byte[] expected = (byte[])truth.Content.Clone();
            Array.Clear(expected, 8192, 4096);                   // the paged-out page is zeros in the file
            Assert.Equal(expected, written);
            Assert.Equal($"file.0x{truth.FileObject:X}.0x{truth.ControlArea:X}.DataSectionObject.evilsvc.log.dat", Path.GetFileName(row.OutputFile));

            // A second run never overwrites: the row says why nothing was written.
            DumpFileRow again = Assert.Single(WindowsDumpFiles.DumpFiles(kernel, dir.Path, fileObject: truth.FileObject).Rows);
            Assert.Null(again.OutputFile);
            Assert.NotNull(again.Doubt);
            Assert.Equal(expected, File.ReadAllBytes(row.OutputFile!));
        }
    }
}
