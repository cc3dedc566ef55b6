using System.Buffers.Binary;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Parsers;

/// <summary>Windows crash dumps (64-bit full and bitmap, 32-bit full) built in the test, and hostile variants of them.</summary>
public sealed class CrashDumpTests : IDisposable
{
    private const int Page = CrashDumpBuilder.Page;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly (ulong BasePage, ulong Pages)[] s_runs = [(0, 2), (4, 3), (0x100, 1)];

    private static void AssertPages(IPhysicalMemory memory, ulong start, int length)
    {
        byte[] actual = new byte[length];
        Assert.Equal(length, memory.Read(start, actual));
        Assert.True(CaptureBuilder.Pattern(start, length).AsSpan().SequenceEqual(actual), $"bytes at 0x{start:X} differ");
    }

    private DumpFormatException OpenFails(byte[] file, ParserLimits? limits = null, string name = "bad.dmp")
        => Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write(name, file), limits).Dispose());

    [Fact]
    public void Full64_runs_follow_the_header_back_to_back()
    {
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("full.dmp", CrashDumpBuilder.Full64(s_runs)));
        Assert.Equal("Windows crash dump (64-bit, full)", memory.Metadata.Format);
        Assert.Equal(
        [
            new PhysicalRun(0, 2 * Page, 0x2000),
            new PhysicalRun(4 * Page, 3 * Page, 0x2000 + 2 * Page),
            new PhysicalRun(0x100 * Page, Page, 0x2000 + 5 * Page),
        ], memory.Runs);
        Assert.All(memory.Runs, r => Assert.Equal(RunStorage.Direct, r.Storage));
        foreach ((ulong basePage, ulong pages) in s_runs)
        {
            AssertPages(memory, basePage * Page, (int)pages * Page);
        }
        byte[] buffer = new byte[3 * Page];
        Assert.Equal(2 * Page, memory.Read(0, buffer));              // page 2 is a hole
        Assert.Equal(0, memory.Read(2 * Page, buffer));
        Assert.Equal(Page, memory.GetDirectSpan(4 * Page, Page).Length);   // zero-copy

        CaptureMetadata m = memory.Metadata;
        Assert.Equal("0x1AA000", m.Get("DirectoryTableBase"));
        Assert.Equal("0xFFFFFA8000000000", m.Get("PfnDataBase"));
        Assert.Equal("0xFFFFF80002A4E670", m.Get("PsLoadedModuleList"));
        Assert.Equal("0xFFFFF80002A2EB90", m.Get("PsActiveProcessHead"));
        Assert.Equal("0x8664 (x64)", m.Get("MachineImageType"));
        Assert.Equal("2", m.Get("NumberProcessors"));
        Assert.Equal("0xE2", m.Get("BugCheckCode"));
        Assert.Equal("0x4", m.Get("BugCheckParameter4"));
        Assert.Equal("0xFFFFF800029F20A0", m.Get("KdDebuggerDataBlock"));
        Assert.Equal("1 (full)", m.Get("DumpType"));
        Assert.Equal((0x2000 + 6 * Page).ToString(System.Globalization.CultureInfo.InvariantCulture), m.Get("RequiredDumpSpace"));
        Assert.StartsWith("2022-", m.Get("SystemTime"), StringComparison.Ordinal);
        Assert.Equal("19041 (NT build number)", m.Get("MinorVersion"));
        Assert.Equal("3", m.Get("NumberOfRuns"));
        Assert.Empty(m.Warnings);
        CpuState cpu = Assert.Single(m.Cpus);
        Assert.Contains("DirectoryTableBase", cpu.Source, StringComparison.Ordinal);
        Assert.True(cpu.TryGet("cr3", out ulong cr3) && cr3 == 0x1AA000);
    }

    [Theory]
    [InlineData(5u, "FDMP")]
    [InlineData(6u, "SDMP")]
    [InlineData(2u, "SDMP")]
    [InlineData(7u, "SDMP")]
    public void Bitmap64_runs_come_from_the_bitmap_and_are_direct(uint dumpType, string signature)
    {
        // 300 pages; every fifth missing, and 200..263 (a whole 64-bit word) missing.
        static bool Stored(ulong pfn) => pfn % 5 != 2 && (pfn < 200 || pfn >= 264);
        byte[] file = CrashDumpBuilder.Bitmap64(300, Stored, dumpType, signature);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("bitmap.dmp", file));
        Assert.Equal("Windows crash dump (64-bit, bitmap)", memory.Metadata.Format);
        Assert.Equal(signature, memory.Metadata.Get("BitmapSignature"));
        long firstPage = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(0x2020));
        long stored = 0;
        var expected = new List<PhysicalRun>();
        for (ulong pfn = 0; pfn < 300; pfn++)
        {
            if (!Stored(pfn))
            {
                continue;
            }
            long at = firstPage + stored++ * Page;
            if (expected.Count > 0 && expected[^1].End == pfn * Page)
            {
                expected[^1] = expected[^1] with { Length = expected[^1].Length + Page };
            }
            else
            {
                expected.Add(new PhysicalRun(pfn * Page, Page, at));
            }
        }
        Assert.Equal(expected, memory.Runs);
        Assert.Equal(stored.ToString(System.Globalization.CultureInfo.InvariantCulture), memory.Metadata.Get("storedPages"));
        byte[] page = new byte[Page];
        for (ulong pfn = 0; pfn < 310; pfn++)
        {
            int read = memory.Read(pfn * Page, page);
            if (pfn < 300 && Stored(pfn))
            {
                Assert.Equal(Page, read);
                Assert.True(CaptureBuilder.Pattern(pfn * Page, Page).AsSpan().SequenceEqual(page), $"page {pfn}");
            }
            else
            {
                Assert.Equal(0, read);
            }
        }
        Assert.Empty(memory.Metadata.Warnings);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Full32_uses_the_32_bit_descriptor_and_reports_pae(bool pae)
    {
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("x86.dmp", CrashDumpBuilder.Full32([(1, 3), (0x9F, 1), (0x100, 2)], pae)));
        Assert.Equal(pae ? "Windows crash dump (32-bit PAE, full)" : "Windows crash dump (32-bit, full)", memory.Metadata.Format);
        Assert.Equal(
        [
            new PhysicalRun(Page, 3 * Page, 0x1000),
            new PhysicalRun(0x9F * Page, Page, 0x1000 + 3 * Page),
            new PhysicalRun(0x100 * Page, 2 * Page, 0x1000 + 4 * Page),
        ], memory.Runs);
        AssertPages(memory, Page, 3 * Page);
        AssertPages(memory, 0x9F * Page, Page);
        AssertPages(memory, 0x100 * Page, 2 * Page);
        Assert.Equal(pae ? "yes" : "no", memory.Metadata.Get("PaeEnabled"));
        Assert.Equal("0x14C (x86)", memory.Metadata.Get("MachineImageType"));
        Assert.Equal("0x8055A1D8", memory.Metadata.Get("PsActiveProcessHead"));
        Assert.Equal("0x80545AE0", memory.Metadata.Get("KdDebuggerDataBlock"));
        Assert.True(Assert.Single(memory.Metadata.Cpus).TryGet("cr3", out ulong cr3) && cr3 == 0x185000);
    }

    public static TheoryData<string> Kinds() => new() { "full64", "bitmap64", "full32" };

    private static byte[] Build(string kind) => kind switch
    {
        "full64" => CrashDumpBuilder.Full64(s_runs),
        "bitmap64" => CrashDumpBuilder.Bitmap64(40, p => p % 3 != 0),
        _ => CrashDumpBuilder.Full32(s_runs, pae: true),
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_prefix_of_the_headers_is_a_one_line_error(string kind)
    {
        byte[] file = Build(kind);
        int headers = kind switch
        {
            "full32" => 0x1000,
            "full64" => 0x2000,
            _ => (int)BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(0x2020)),   // up to the first stored page
        };
        string path = _dir.Write("prefix.dmp", file);
        for (int length = headers; length >= 1; length--)
        {
            using (var truncate = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                truncate.SetLength(length);
            }
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
            if (length >= 8)
            {
                Assert.Equal("crash dump", e.Error.Format);   // detected by its signature, not handed to raw
            }
        }
    }

    [Fact]
    public void Run_count_is_limited_and_a_reasonable_count_is_accepted()
    {
        string path = _dir.Write("runs.dmp", CrashDumpBuilder.Full64(s_runs));
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxCrashDumpRuns = 2 }).Dispose());
        Assert.Contains("MaxCrashDumpRuns", e.Message, StringComparison.Ordinal);
        Assert.Equal("DUMP_HEADER64.PhysicalMemoryBlock.NumberOfRuns", e.Error.Structure);
        Assert.Equal(0x88, e.Error.FileOffset);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxCrashDumpRuns = 3 });
        Assert.Equal(3, ok.Runs.Count);

        // A full header's buffer holds 43 runs: a dump that uses them all opens with the default limit.
        var many = Enumerable.Range(0, 43).Select(i => ((ulong)i * 2, 1UL)).ToArray();
        using RunMappedMemory full = CaptureOpener.Open(_dir.Write("43.dmp", CrashDumpBuilder.Full64(many)));
        Assert.Equal(43, full.Runs.Count);
        Assert.Empty(full.Metadata.Warnings);
    }

    [Theory]
    [InlineData(0x45474150u, "fill pattern")]   // "PAGE": the descriptor of a bitmap dump
    [InlineData(0xFFFFFFFFu, "MaxCrashDumpRuns")]
    [InlineData(0u, "no runs")]
    public void NumberOfRuns_that_cannot_be_right_is_an_error(uint runs, string problem)
    {
        byte[] file = CrashDumpBuilder.Full64(s_runs);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x88), runs);
        DumpFormatException e = OpenFails(file);
        Assert.Equal("DUMP_HEADER64.PhysicalMemoryBlock.NumberOfRuns", e.Error.Structure);
        Assert.Equal(0x88, e.Error.FileOffset);
        Assert.Contains(problem, e.Error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_list_past_the_end_of_the_header_is_an_error()
    {
        byte[] file = CrashDumpBuilder.Full64(s_runs);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x88), 600);   // 600 x 16 bytes from 0x98 > 0x2000
        DumpFormatException e = OpenFails(file, new ParserLimits { MaxCrashDumpRuns = 1000 });
        Assert.Contains("past the end of the 0x2000-byte header", e.Error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Runs_and_page_counts_beyond_the_file_are_clipped_with_a_warning()
    {
        // The last run claims 1000 pages, the file holds one; a fourth run starts past the end of the file.
        byte[] file = CrashDumpBuilder.Full64([.. s_runs, (0x200, 2)]);
        file = file[..(0x2000 + 6 * Page)];
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x88 + 0x18 + 2 * 16), 1000);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("short.dmp", file));
        Assert.Equal(3, memory.Runs.Count);
        Assert.Equal(new PhysicalRun(0x100 * Page, Page, 0x2000 + 5 * Page), memory.Runs[2]);
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("truncated", StringComparison.Ordinal) && w.Contains($"0x{(999 + 2) * Page:X}", StringComparison.Ordinal));
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("NumberOfPages", StringComparison.Ordinal));
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("RequiredDumpSpace", StringComparison.Ordinal));
        byte[] buffer = new byte[2 * Page];
        Assert.Equal(Page, memory.Read(0x100 * Page, buffer));
    }

    [Fact]
    public void Page_count_beyond_the_physical_address_limit_is_an_error()
    {
        byte[] file = CrashDumpBuilder.Full64(s_runs);
        int run1 = 0x88 + 0x10 + 16;
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(run1 + 8), ulong.MaxValue / 2);
        DumpFormatException e = OpenFails(file);
        Assert.Equal("DUMP_HEADER64.PhysicalMemoryBlock.Run[1]", e.Error.Structure);
        Assert.Equal(run1, e.Error.FileOffset);
    }

    [Fact]
    public void Overlapping_runs_are_an_error()
    {
        DumpFormatException e = OpenFails(CrashDumpBuilder.Full64([(0, 4), (2, 1)]));
        Assert.Contains("overlaps", e.Error.Problem, StringComparison.Ordinal);
        Assert.Equal(0x88 + 0x10 + 16, e.Error.FileOffset);
    }

    [Fact]
    public void Bitmap_length_pointing_outside_the_file_is_an_error()
    {
        byte[] file = CrashDumpBuilder.Bitmap64(40, _ => true);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x2030), 1UL << 39);
        DumpFormatException e = OpenFails(file);
        Assert.Equal("bitmap header.Pages", e.Error.Structure);
        Assert.Equal(0x2030, e.Error.FileOffset);
        Assert.Contains("past the end of the file", e.Error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Bitmap_pages_are_limited_and_a_reasonable_bitmap_is_accepted()
    {
        string path = _dir.Write("limit.dmp", CrashDumpBuilder.Bitmap64(40, _ => true));
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxCrashDumpBitmapPages = 39 }).Dispose());
        Assert.Contains("MaxCrashDumpBitmapPages", e.Message, StringComparison.Ordinal);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxCrashDumpBitmapPages = 40 });
        Assert.Equal(40UL * Page, ok.TotalBytes());
    }

    [Theory]
    [InlineData(0x20, 0x10, "FirstPage")]                         // page data inside the bitmap header
    [InlineData(0x20, 0x7FFF_0000, "FirstPage")]                  // page data past the end of the file
    [InlineData(0x28, 1000, "TotalPresentPages")]                 // more present pages than bits
    [InlineData(0x00, 0x12345678, "Signature")]
    [InlineData(0x00, 0x504D4452, "Signature")]                   // "RDMP"
    [InlineData(0x04, 0, "ValidDump")]
    public void Bitmap_header_fields_that_cannot_be_right_are_named(int field, long value, string name)
    {
        byte[] file = CrashDumpBuilder.Bitmap64(40, _ => true);
        if (field is 0 or 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x2000 + field), (uint)value);
        }
        else
        {
            BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(0x2000 + field), value);
        }
        DumpFormatException e = OpenFails(file);
        Assert.Equal($"bitmap header.{name}", e.Error.Structure);
        Assert.Equal(0x2000 + field, e.Error.FileOffset);
    }

    [Fact]
    public void Bitmap_pages_past_the_end_of_the_file_are_clipped_with_a_warning()
    {
        byte[] file = CrashDumpBuilder.Bitmap64(40, _ => true);
        file = file[..(file.Length - 10 * Page - 100)];
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("cut.dmp", file));
        long firstPage = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(0x2020));
        Assert.Equal(new PhysicalRun(0, (ulong)(file.Length - firstPage), firstPage), Assert.Single(memory.Runs));
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("truncated", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(3u, "holds no physical memory")]
    [InlineData(4u, "holds no physical memory")]
    [InlineData(10u, "not supported")]
    [InlineData(0x45474150u, "unknown dump type")]
    public void Dump_types_without_a_memory_image_are_named(uint dumpType, string problem)
    {
        byte[] file = CrashDumpBuilder.Full64(s_runs);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0xF98), dumpType);
        DumpFormatException e = OpenFails(file);
        Assert.Equal("DUMP_HEADER64.DumpType", e.Error.Structure);
        Assert.Equal(0xF98, e.Error.FileOffset);
        Assert.Contains(problem, e.Error.Problem, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Random_header_corruption_never_crashes(string kind)
    {
        byte[] original = Build(kind);
        var random = new Random(kind.Length * 7919);
        int limit = kind == "bitmap64" ? 0x2040 : kind == "full64" ? 0x1000 : 0x1000;
        byte[] page = new byte[Page];
        string path = _dir.File("mutant.dmp");
        for (int i = 0; i < 300; i++)
        {
            byte[] mutant = (byte[])original.Clone();
            for (int flips = random.Next(1, 4); flips > 0; flips--)
            {
                // Mostly the fields that matter: the first 0x100 bytes, the descriptor, DumpType, the bitmap header.
                int at = random.Next(4) switch
                {
                    0 => random.Next(0, 0x100),
                    1 => random.Next(0x60, 0x120),
                    2 => random.Next(0xF80, 0xFB0),
                    _ => random.Next(0, limit),
                };
                mutant[at] = random.Next(3) switch { 0 => 0xFF, 1 => 0, _ => (byte)random.Next(256) };
            }
            File.WriteAllBytes(path, mutant);
            if (!CaptureOpener.TryOpen(path, out RunMappedMemory? memory, out FormatError? error))
            {
                Assert.False(string.IsNullOrEmpty(error!.Problem));
                continue;
            }
            using (memory)
            {
                foreach (PhysicalRun run in memory!.Runs.Take(4))
                {
                    memory.Read(run.PhysicalAddress, page);
                    memory.Read(run.End - 100, page);
                }
            }
        }
    }
}
