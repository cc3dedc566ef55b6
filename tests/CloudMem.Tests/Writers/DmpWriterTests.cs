using System.Buffers.Binary;
using System.Text.Json;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Cli;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Formats.CrashDump;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Tests.Writers;

/// <summary>The dmp writer: what it writes into the header, and round trips through our reader.</summary>
public sealed class DmpWriterTests : IDisposable
{
    private const int Page = 4096;
    private const uint PageFill = 0x45474150;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    // Several runs, holes between them, and one range that does not cover whole pages.
    private static readonly (ulong Start, int Length)[] s_ranges = [(0, 0x3000), (0x5000, 0x2000), (0x100000, 0x10000), (0x200800, 0x800)];

    /// <summary>Every captured byte of <paramref name="source"/> reads back the same from <paramref name="copy"/>.</summary>
    private static void AssertSameBytes(IPhysicalMemory source, IPhysicalMemory copy)
    {
        byte[] a = new byte[1 << 20];
        byte[] b = new byte[1 << 20];
        foreach (PhysicalRun run in source.Runs)
        {
            for (ulong pa = run.PhysicalAddress; pa < run.End; pa += (ulong)a.Length)
            {
                int count = (int)Math.Min((ulong)a.Length, run.End - pa);
                Assert.Equal(count, source.Read(pa, a.AsSpan(0, count)));
                Assert.Equal(count, copy.Read(pa, b.AsSpan(0, count)));
                Assert.True(a.AsSpan(0, count).SequenceEqual(b.AsSpan(0, count)), $"bytes differ in 0x{pa:X}+0x{count:X}");
            }
        }
    }

    private static uint U32(byte[] file, int at) => BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at));

    private static ulong U64(byte[] file, int at) => BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(at));

    [SkippableTheory]
    [InlineData(null)]
    [InlineData("full")]
    [InlineData("bitmap")]
    public void Synthetic_runs_and_holes_round_trip(string? variant)
    {
        string source = _dir.Write("src.lime", CaptureBuilder.Lime(s_ranges));
        using RunMappedMemory memory = CaptureOpener.Open(source);
        string output = _dir.File($"out-{variant ?? "default"}.dmp");
        ConvertResult result = CaptureConverter.Convert(source, memory, "dmp", output, variant);
        Assert.True(result.Verified);
        Assert.Equal(4, result.Records);
        Assert.Contains(result.Notes, n => n.Contains("DirectoryTableBase is 0", StringComparison.Ordinal));
        Assert.Contains(result.Notes, n => n.Contains("whole pages", StringComparison.Ordinal) && n.Contains("2048 bytes", StringComparison.Ordinal));

        using RunMappedMemory back = CaptureOpener.Open(output);
        bool bitmap = variant == "bitmap";
        Assert.Equal($"Windows crash dump (64-bit, {(bitmap ? "bitmap" : "full")})", back.Metadata.Format);
        Assert.Equal([(0UL, 0x3000UL), (0x5000UL, 0x2000UL), (0x100000UL, 0x10000UL), (0x200000UL, 0x1000UL)],
            back.Runs.Select(r => (r.PhysicalAddress, r.Length)).ToArray());
        Assert.All(back.Runs, r => Assert.Equal(RunStorage.Direct, r.Storage));
        AssertSameBytes(memory, back);
        byte[] widened = new byte[0x800];
        Assert.Equal(0x800, back.Read(0x200000, widened));
        Assert.All(widened, b => Assert.Equal(0, b));
        Assert.Empty(back.Metadata.Warnings);
        Assert.Empty(back.Metadata.Cpus);                  // DirectoryTableBase 0 is not a CR3

        byte[] file = File.ReadAllBytes(output);
        Assert.Equal("PAGEDU64"u8.ToArray(), file[..8]);
        Assert.Equal(0xFu, U32(file, 0x08));
        Assert.Equal(0UL, U64(file, 0x10));
        Assert.Equal(0x8664u, U32(file, 0x30));
        Assert.Equal(1u, U32(file, 0x34));
        Assert.Equal(bitmap ? 5u : 1u, U32(file, 0xF98));
        Assert.Equal((ulong)file.Length, U64(file, 0xFA0));
        // Fields Windows leaves unset keep the "PAGE" fill: the CONTEXT, the exception record, SystemUpTime.
        Assert.Equal(PageFill, U32(file, 0x348));
        Assert.Equal(PageFill, U32(file, 0xF00));
        Assert.Equal(PageFill, U32(file, 0x1030));
        if (bitmap)
        {
            Assert.Equal(PageFill, U32(file, 0x88));      // no run list in a bitmap dump
            Assert.Equal("FDMPDUMP"u8.ToArray(), file[0x2000..0x2008]);
            ulong firstPage = U64(file, 0x2020);
            Assert.Equal(0UL, firstPage % Page);
            Assert.Equal(0x3UL + 2 + 0x10 + 1, U64(file, 0x2028));
            Assert.Equal(0x201UL, U64(file, 0x2030));
            // Volatility reads the bitmap as 32-bit words: the last word's bits past the end are there and clear.
            int words = (0x201 + 31) / 32;
            Assert.True(0x2038 + words * 4 <= (int)firstPage);
            Assert.Equal(0x01u, U32(file, 0x2038 + 4 * (words - 1)));
            Assert.Equal((ulong)file.Length, firstPage + (0x3UL + 2 + 0x10 + 1) * Page);
        }
        else
        {
            Assert.Equal(4u, U32(file, 0x88));
            Assert.Equal(0x3UL + 2 + 0x10 + 1, U64(file, 0x90));
            Assert.Equal(0x200UL, U64(file, 0x98 + 3 * 16));
            Assert.Equal(1UL, U64(file, 0xA0 + 3 * 16));
            Assert.Equal(PageFill, U32(file, 0x98 + 4 * 16));   // the rest of the buffer keeps the fill
            Assert.Equal(0x2000 + (0x3UL + 2 + 0x10 + 1) * Page, (ulong)file.Length);
        }
    }

    [SkippableFact]
    public void Output_is_the_same_on_every_run()
    {
        string source = _dir.Write("src.lime", CaptureBuilder.Lime(s_ranges));
        using RunMappedMemory memory = CaptureOpener.Open(source);
        foreach (string variant in new[] { "full", "bitmap" })
        {
            ConvertResult a = CaptureConverter.Convert(source, memory, "dmp", _dir.File($"a-{variant}.dmp"), variant);
            ConvertResult b = CaptureConverter.Convert(source, memory, "dmp", _dir.File($"b-{variant}.dmp"), variant);
            Assert.Equal(a.Sha256, b.Sha256);
        }
    }

    [SkippableFact]
    public void Too_many_runs_for_a_full_dump_asks_for_the_bitmap_variant()
    {
        var ranges = Enumerable.Range(0, DmpWriter.MaxFullRuns + 1).Select(i => ((ulong)i * 2 * Page, Page)).ToArray();
        string source = _dir.Write("many.lime", CaptureBuilder.Lime(ranges));
        using RunMappedMemory memory = CaptureOpener.Open(source);
        var e = Assert.Throws<ConvertException>(() => CaptureConverter.Convert(source, memory, "dmp", _dir.File("many.dmp")));
        Assert.Contains("--variant bitmap", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("many.dmp")));
        ConvertResult ok = CaptureConverter.Convert(source, memory, "dmp", _dir.File("many-bitmap.dmp"), "bitmap");
        using RunMappedMemory back = CaptureOpener.Open(ok.Output);
        Assert.Equal(DmpWriter.MaxFullRuns + 1, back.Runs.Count);
        AssertSameBytes(memory, back);

        // Exactly as many runs as the header holds is still a full dump.
        var fit = Enumerable.Range(0, DmpWriter.MaxFullRuns).Select(i => ((ulong)i * 2 * Page, Page)).ToArray();
        string fitSource = _dir.Write("fit.lime", CaptureBuilder.Lime(fit));
        using RunMappedMemory fitMemory = CaptureOpener.Open(fitSource);
        CaptureConverter.Convert(fitSource, fitMemory, "dmp", _dir.File("fit.dmp"));
    }

    [SkippableFact]
    public void Crash_dump_to_crash_dump_keeps_the_directory_table_base()
    {
        string source = _dir.Write("src.dmp", CrashDumpBuilder.Full64([(0, 2), (4, 3)], dtb: 0x1AA000));
        using RunMappedMemory memory = CaptureOpener.Open(source);
        ConvertResult result = CaptureConverter.Convert(source, memory, "dmp", _dir.File("copy.dmp"), "bitmap");
        using RunMappedMemory back = CaptureOpener.Open(result.Output);
        Assert.Equal("0x1AA000", back.Metadata.Get("DirectoryTableBase"));
        Assert.Contains(result.Notes, n => n.Contains("0x1AA000", StringComparison.Ordinal));
        AssertSameBytes(memory, back);
    }

    [SkippableTheory]
    [InlineData("full")]
    [InlineData("bitmap")]
    public void Real_capture_round_trips_through_dmp(string variant)
    {
        string raw = Fixture.Require("memory.raw");
        using RunMappedMemory memory = CaptureOpener.OpenAs(raw, "raw");
        ConvertResult result = CaptureConverter.Convert(raw, memory, "dmp", _dir.File($"memory-{variant}.dmp"), variant);
        Assert.True(result.Verified);
        using RunMappedMemory back = CaptureOpener.Open(result.Output);
        Assert.StartsWith("Windows crash dump (64-bit", back.Metadata.Format, StringComparison.Ordinal);
        Assert.Equal(memory.TotalBytes(), back.TotalBytes());
        AssertSameBytes(memory, back);
        Assert.Empty(back.Metadata.Warnings);
    }

    [SkippableFact]
    public void Real_qemu_cr3_becomes_the_directory_table_base()
    {
        string elf = Fixture.Require("memory.elf");
        using RunMappedMemory memory = CaptureOpener.Open(elf);
        CpuState cpu = memory.Metadata.Cpus.First(c => c.TryGet("cr3", out ulong v) && v != 0);
        Assert.True(cpu.TryGet("cr3", out ulong cr3));
        ConvertResult result = CaptureConverter.Convert(elf, memory, "dmp", _dir.File("elf.dmp"));
        using RunMappedMemory back = CaptureOpener.Open(result.Output);
        Assert.Equal($"0x{cr3 & ~0xFFFUL:X}", back.Metadata.Get("DirectoryTableBase"));
        Assert.True(Assert.Single(back.Metadata.Cpus).TryGet("cr3", out ulong dtb) && dtb == (cr3 & ~0xFFFUL));
        AssertSameBytes(memory, back);
    }

    [SkippableFact]
    public void Cli_info_lists_format_runs_and_header_metadata_as_json()
    {
        string path = _dir.Write("cli.dmp", CrashDumpBuilder.Full64([(0, 2), (4, 3)]));
        (int exit, string stdout, string err) = CliProcessTests.Run("info", path, "--output", "json");
        Assert.True(exit == 0, err);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement root = json.RootElement;
        Assert.Equal("Windows crash dump (64-bit, full)", root.GetProperty("format").GetString());
        Assert.Equal(2, root.GetProperty("runCount").GetInt32());
        Assert.Equal("0x2000", root.GetProperty("runs")[0].GetProperty("fileOffset").GetString());
        JsonElement properties = root.GetProperty("properties");
        Assert.Equal("0x1AA000", properties.GetProperty("DirectoryTableBase").GetString());
        Assert.Equal("1 (full)", properties.GetProperty("DumpType").GetString());
        Assert.Equal("0xE2", properties.GetProperty("BugCheckCode").GetString());
        Assert.Equal("cr3", root.GetProperty("cpus")[0].GetProperty("registers").EnumerateObject().Single().Name);

        (exit, stdout, err) = CliProcessTests.Run("info", path);
        Assert.True(exit == 0, err);
        Assert.Contains("Windows crash dump (64-bit, full)", stdout, StringComparison.Ordinal);
        Assert.Contains("PsActiveProcessHead", stdout, StringComparison.Ordinal);
        Assert.Contains("KdDebuggerDataBlock", stdout, StringComparison.Ordinal);
    }
}
