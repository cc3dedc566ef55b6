using CloudMem.Engine.Windows.Files;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.mftscan on the "registry" scenario's NTFS FILE records (a directory, a time-stomped executable, a file with
/// resident data, a deleted file, a record torn in its second sector), written with real fixups into free physical
/// pages, against the manifest, on Windows 7/10/11 images; and the FILE record parser on hostile bytes.
/// </summary>
public sealed class WindowsMftScanTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Mftscan_finds_every_record_with_names_times_and_data_as_laid_out(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        List<LaidOutMftRecord> truth = built.Manifest.MftRecords!;
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        var report = WindowsMftScan.MftScan(memory);
        WindowsRegistryImages.Print(output, report);
        Assert.Empty(report.Notes);
        DateTimeOffset[] T(DateTime t) => [.. MftRecordWriter.TimesOf(t).Select(d => new DateTimeOffset(d))];
        Assert.Equal(truth.OrderBy(t => t.Physical).Select(t => (t.Physical, t.Record.Record, t.Record.Sequence, !t.Record.Deleted, t.Record.Directory, (string?)t.Record.Name, (ulong?)t.Record.Parent,
                t.Record.Content?.Length ?? t.Record.NonResidentSize, t.Record.Content is null ? t.Record.NonResidentSize is null ? null : (bool?)false : true,
                string.Join(",", T(t.Record.Created)), string.Join(",", T(t.Record.SiCreated)), t.Record.SiCreated < t.Record.Created)),
            report.Rows.Select(r => (r.Offset, r.Record, r.Sequence, r.InUse, r.Directory, r.Name, r.ParentRecord, r.DataSize, r.DataResident,
                string.Join(",", new[] { r.Created, r.Modified, r.MftModified, r.Accessed }), string.Join(",", new[] { r.SiCreated, r.SiModified, r.SiMftModified, r.SiAccessed }), r.Timestomped)));
        Assert.All(report.Rows, r => Assert.Equal(MftNamespace.Win32, r.Namespace));
        MftScanRow torn = Assert.Single(report.Rows, r => r.Doubt is not null);
        Assert.Equal("notes.txt", torn.Name);
        Assert.Equal("sector 1 ends with 0xBEEF, not the update sequence number 0x0007 (torn or partly overwritten)", torn.Doubt);
        Assert.Equal("evilsvc.exe", Assert.Single(report.Rows, r => r.Timestomped).Name);
    }

    [Fact]
    public void The_parser_applies_fixups_returns_resident_data_and_refuses_impossible_headers()
    {
        var file = new ScenarioMftRecord(42, "a.txt", 5, new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc), new DateTime(2024, 1, 2, 3, 4, 5, DateTimeKind.Utc))
        {
            Content = [.. Enumerable.Range(0, 600).Select(i => (byte)i)],     // crosses the first sector's end: the fixup restores bytes 510-511
        };
        byte[] raw = MftRecordWriter.Write(file);
        Assert.Equal(7, raw[510]);
        MftRecord record = MftRecord.Parse(raw)!;
        Assert.Equal(file.Content, record.ResidentData);
        Assert.Null(record.FixupError);
        Assert.Null(record.AttributeError);
        byte[] bad = (byte[])raw.Clone();
        bad[6] = 9;                                      // update sequence count not 1 + sectors
        Assert.Null(MftRecord.Parse(bad));
        bad = (byte[])raw.Clone();
        bad[0x14] = 0xF0;
        bad[0x15] = 0x03;                                // first attribute beyond the used size
        Assert.Null(MftRecord.Parse(bad));
        bad = (byte[])raw.Clone();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(0x38 + 4), 0x7FFFFFF8);   // $STANDARD_INFORMATION length past the record
        Assert.StartsWith("attribute 0x10 at 0x38 has length 0x7FFFFFF8", MftRecord.Parse(bad)!.AttributeError, StringComparison.Ordinal);
    }
}
