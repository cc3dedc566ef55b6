using System.Buffers.Binary;
using System.Text;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Parsers;

/// <summary>Parsers on small captures built in the test, where every byte is known.</summary>
public sealed class SyntheticFormatTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static void AssertPattern(IPhysicalMemory memory, ulong start, int length)
    {
        byte[] actual = new byte[length];
        Assert.Equal(length, memory.Read(start, actual));
        Assert.True(CaptureBuilder.Pattern(start, length).AsSpan().SequenceEqual(actual), $"bytes at 0x{start:X} differ");
    }

    [Fact]
    public void Lime_ranges_become_runs_and_holes_are_short_reads()
    {
        string path = _dir.Write("a.lime", CaptureBuilder.Lime((0x1000, 0x3000), (0x10000, 0x2000)));
        using RunMappedMemory memory = CaptureOpener.Open(path);
        Assert.Equal("LiME", memory.Metadata.Format);
        Assert.Equal([new PhysicalRun(0x1000, 0x3000, 32), new PhysicalRun(0x10000, 0x2000, 32 + 0x3000 + 32)], memory.Runs);
        AssertPattern(memory, 0x1000, 0x3000);
        AssertPattern(memory, 0x10000, 0x2000);
        byte[] buffer = new byte[0x2000];
        Assert.Equal(0x1000, memory.Read(0x3000, buffer));   // runs into the hole at 0x4000
        Assert.Equal(0, memory.Read(0x5000, buffer));        // starts in a hole
        Assert.Equal(0, memory.Read(ulong.MaxValue - 10, buffer));
        Assert.Equal(0x12000UL, memory.MaxAddress);
    }

    [Fact]
    public void Avml_decodes_snappy_framed_records()
    {
        string path = _dir.Write("a.avml", CaptureBuilder.Avml((0, 0x30000), (0x100000, 0x21000)));
        using RunMappedMemory memory = CaptureOpener.Open(path);
        Assert.StartsWith("AVML", memory.Metadata.Format);
        Assert.Equal(2, memory.Runs.Count);
        AssertPattern(memory, 0, 0x30000);
        AssertPattern(memory, 0x100000, 0x21000);
        AssertPattern(memory, 0x100000 + 0xFFF0, 0x40);      // across a chunk boundary, from the cache
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("AVML skips all-zero", StringComparison.Ordinal));
    }

    [Fact]
    public void Avml_trailer_that_disagrees_is_an_error_with_offset()
    {
        byte[] file = CaptureBuilder.Avml((0, 0x10000));
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(file.Length - 8), 12345);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("t.avml", file)).Dispose());
        Assert.Equal("AVML", e.Error.Format);
        Assert.Equal("record[0].trailer", e.Error.Structure);
        Assert.Equal(file.Length - 8, e.Error.FileOffset);
    }

    [Fact]
    public void Elf_zero_tail_overlaps_and_notes()
    {
        byte[] vmcoreinfo = Encoding.ASCII.GetBytes("OSRELEASE=6.1.0-test\nPAGESIZE=4096\nKERNELOFFSET=22e00000\nNUMBER(phys_base)=-10485760\nSYMBOL(init_uts_ns)=ffffffff82a12340\n");
        byte[] prstatus = new byte[336];
        BinaryPrimitives.WriteInt32LittleEndian(prstatus.AsSpan(32), 42);                    // pr_pid
        BinaryPrimitives.WriteUInt64LittleEndian(prstatus.AsSpan(112 + 16 * 8), 0xFFFFFFFF81000000); // rip
        byte[] notes = [.. CaptureBuilder.Note("CORE", 1, prstatus), .. CaptureBuilder.Note("VMCOREINFO", 0, vmcoreinfo)];
        byte[] file = CaptureBuilder.Elf([(0x2000, 0x1000, 0x3000), (0x100000, 0x2000, 0x2000), (0x101000, 0x2000, 0x2000)], notes);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("a.elf", file));
        Assert.Equal(RunStorage.Zero, memory.Runs[1].Storage);
        AssertPattern(memory, 0x2000, 0x1000);
        byte[] tail = new byte[0x2000];
        Assert.Equal(0x2000, memory.Read(0x3000, tail));
        Assert.All(tail, b => Assert.Equal(0, b));
        // The overlapping third segment is an alias: the first one's bytes win, the rest extends the range.
        Assert.Equal(0x103000UL, memory.MaxAddress);
        AssertPattern(memory, 0x100000, 0x2000);
        Assert.Equal("6.1.0-test", memory.Metadata.VmcoreInfo!.OsRelease);
        Assert.True(memory.Metadata.VmcoreInfo.TryGetKernelOffset(out ulong offset) && offset == 0x22e00000);
        Assert.True(memory.Metadata.VmcoreInfo.TryGetNumber("phys_base", out long physBase) && physBase == -0xA00000);
        Assert.True(memory.Metadata.VmcoreInfo.TryGetSymbol("init_uts_ns", out ulong uts) && uts == 0xffffffff82a12340);
        CpuState cpu = Assert.Single(memory.Metadata.Cpus);
        Assert.True(cpu.TryGet("pid", out ulong pid) && pid == 42);
        Assert.True(cpu.TryGet("rip", out ulong rip) && rip == 0xFFFFFFFF81000000);
    }

    [Fact]
    public void Elf_program_headers_outside_the_file_are_an_error()
    {
        byte[] file = CaptureBuilder.Elf([(0, 0x1000, 0x1000)]);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x20), 0x7FFF_0000);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("bad.elf", file)).Dispose());
        Assert.Equal("ELF header.e_phoff", e.Error.Structure);
        Assert.Equal(0x20, e.Error.FileOffset);
        Assert.Matches(@"bad\.elf: ELF core ELF header\.e_phoff at 0x20: .*past the end of the file", e.Message);
    }

    [Fact]
    public void Elf_program_header_count_is_limited()
    {
        byte[] file = CaptureBuilder.Elf([(0, 0x1000, 0x1000), (0x1000, 0x1000, 0x1000), (0x2000, 0x1000, 0x1000)]);
        string path = _dir.Write("many.elf", file);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxProgramHeaders = 2 }).Dispose());
        Assert.Contains("MaxProgramHeaders", e.Message, StringComparison.Ordinal);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxProgramHeaders = 3 });
        Assert.Equal(0x3000UL, ok.TotalBytes());
    }

    [Theory]
    [InlineData("zlib")]
    [InlineData("snappy")]
    [InlineData("zstd")]
    [InlineData("none")]
    public void Kdump_pages_decode_and_excluded_pages_are_holes(string compression)
    {
        byte[] file = CaptureBuilder.Kdump(40, p => p % 7 != 3, compression, Encoding.ASCII.GetBytes("OSRELEASE=6.1.0-synthetic\n"));
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write($"k.{compression}", file));
        Assert.Equal(compression == "none" ? "none" : compression, memory.Metadata.Get("compression"));
        Assert.Equal("6.1.0-synthetic", memory.Metadata.VmcoreInfo?.OsRelease);
        Assert.Equal(7, memory.Runs.Count);
        for (int p = 0; p < 40; p++)
        {
            byte[] page = new byte[4096];
            int read = memory.Read((ulong)p * 4096, page);
            if (p % 7 == 3)
            {
                Assert.Equal(0, read);
            }
            else
            {
                Assert.Equal(4096, read);
                Assert.True(CaptureBuilder.Pattern((ulong)p * 4096, 4096).AsSpan().SequenceEqual(page));
            }
        }
        AssertPattern(memory, 0x800, 0x1000);                 // unaligned, through the cache
        Assert.Equal(0, memory.DecodeFailures);
    }

    [Fact]
    public void Flattened_kdump_honours_last_writer_and_matches_the_standard_file()
    {
        byte[] standard = CaptureBuilder.Kdump(64, p => p != 10, "snappy");
        byte[] flat = CaptureBuilder.Flatten(standard, 3000);
        using RunMappedMemory a = CaptureOpener.Open(_dir.Write("k.std", standard));
        using RunMappedMemory b = CaptureOpener.Open(_dir.Write("k.flat", flat));
        Assert.Equal("kdump (makedumpfile flattened)", b.Metadata.Format);
        Assert.Equal(a.Runs, b.Runs);
        byte[] x = new byte[64 * 4096];
        byte[] y = new byte[64 * 4096];
        foreach (PhysicalRun run in a.Runs)
        {
            Assert.Equal((int)run.Length, a.Read(run.PhysicalAddress, x.AsSpan(0, (int)run.Length)));
            Assert.Equal((int)run.Length, b.Read(run.PhysicalAddress, y.AsSpan(0, (int)run.Length)));
            Assert.True(x.AsSpan(0, (int)run.Length).SequenceEqual(y.AsSpan(0, (int)run.Length)));
        }
    }

    [Fact]
    public void Kdump_corrupt_page_is_a_short_read_not_an_exception()
    {
        byte[] file = CaptureBuilder.Kdump(8, _ => true, "zlib");
        // Page 2's descriptor: point its data past the end of the file.
        int at = FindDescriptorTable(file, 8) + 2 * 24;
        BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(at), file.Length + 100);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("k.corrupt", file));
        byte[] buffer = new byte[8 * 4096];
        Assert.Equal(2 * 4096, memory.Read(0, buffer));
        Assert.Equal(1, memory.DecodeFailures);
        Assert.Contains("page_desc[2]", memory.LastDecodeProblem, StringComparison.Ordinal);
    }

    private static int FindDescriptorTable(byte[] kdump, int pages)
    {
        int block = 4096;
        int sub = BinaryPrimitives.ReadInt32LittleEndian(kdump.AsSpan(0x1B0));
        int bitmaps = BinaryPrimitives.ReadInt32LittleEndian(kdump.AsSpan(0x1B4));
        Assert.True(pages > 0);
        return (1 + sub + bitmaps) * block;
    }

    [Theory]
    [InlineData(0x1AC, 3000, "disk_dump_header.block_size")]
    [InlineData(0x1B4, 0x7FFFFFFF, "disk_dump_header.bitmap_blocks")]
    [InlineData(0x1B0, 0x7FFFFFFF, "disk_dump_header.sub_hdr_size")]
    public void Kdump_corrupt_header_fields_are_named(int offset, int value, string structure)
    {
        byte[] file = CaptureBuilder.Kdump(16, _ => true, "zlib");
        BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(offset), value);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("k.bad", file)).Dispose());
        Assert.Equal(structure, e.Error.Structure);
        Assert.Equal(offset, e.Error.FileOffset);
    }

    [Fact]
    public void Kdump_huge_max_mapnr_is_rejected()
    {
        byte[] file = CaptureBuilder.Kdump(16, _ => true, "zlib");
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(4096 + 0x60), ulong.MaxValue / 2);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("k.mapnr", file)).Dispose());
        Assert.Contains("max_mapnr", e.Error.Structure, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_count_is_limited_and_a_reasonable_count_is_accepted()
    {
        byte[] file = CaptureBuilder.Kdump(64, p => p % 2 == 0, "none");   // 32 runs of one page
        string path = _dir.Write("k.runs", file);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxRuns = 31 }).Dispose());
        Assert.Contains("MaxRuns", e.Message, StringComparison.Ordinal);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxRuns = 32 });
        Assert.Equal(32, ok.Runs.Count);
    }

    [Fact]
    public void Record_counts_are_limited()
    {
        string lime = _dir.Write("r.lime", CaptureBuilder.Lime((0, 0x1000), (0x2000, 0x1000), (0x4000, 0x1000)));
        Assert.Contains("MaxRecords", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(lime, new ParserLimits { MaxRecords = 2 }).Dispose()).Message, StringComparison.Ordinal);
        CaptureOpener.Open(lime, new ParserLimits { MaxRecords = 3 }).Dispose();

        string avml = _dir.Write("r.avml", CaptureBuilder.Avml((0, 0x30000)));
        Assert.Contains("MaxSnappyChunks", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(avml, new ParserLimits { MaxSnappyChunks = 2 }).Dispose()).Message, StringComparison.Ordinal);
        CaptureOpener.Open(avml, new ParserLimits { MaxSnappyChunks = 3 }).Dispose();

        byte[] flat = CaptureBuilder.Flatten(CaptureBuilder.Kdump(8, _ => true, "none"), 4096);
        string flatPath = _dir.Write("r.flat", flat);
        Assert.Contains("MaxFlattenedRecords", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(flatPath, new ParserLimits { MaxFlattenedRecords = 5 }).Dispose()).Message, StringComparison.Ordinal);
        CaptureOpener.Open(flatPath, new ParserLimits { MaxFlattenedRecords = 100 }).Dispose();
    }

    [Fact]
    public void Lime_reversed_range_is_an_error_with_offset()
    {
        byte[] file = CaptureBuilder.Lime((0x1000, 0x1000), (0x3000, 0x1000));
        int second = 32 + 0x1000;
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(second + 16), 0x10);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("rev.lime", file)).Dispose());
        Assert.Equal("header[1].e_addr", e.Error.Structure);
        Assert.Equal(second + 16, e.Error.FileOffset);
    }

    [Fact]
    public void Lime_overlapping_ranges_are_an_error()
    {
        byte[] file = CaptureBuilder.Lime((0x1000, 0x2000), (0x2000, 0x1000));
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("ovl.lime", file)).Dispose());
        Assert.Contains("overlaps", e.Error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Flattened_record_size_past_the_end_is_an_error()
    {
        byte[] flat = CaptureBuilder.Flatten(CaptureBuilder.Kdump(4, _ => true, "none"), 4096);
        BinaryPrimitives.WriteInt64BigEndian(flat.AsSpan(4096 + 8), long.MaxValue / 2);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("big.flat", flat)).Dispose());
        Assert.Equal("record[0]", e.Error.Structure);
        Assert.Equal(4096, e.Error.FileOffset);
    }

    [Fact]
    public void Missing_empty_directory_and_tiny_files_are_clear_errors()
    {
        Assert.Equal("no such file", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.File("nope"))).Error.Problem);
        Assert.Contains("directory", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Path)).Error.Problem, StringComparison.Ordinal);
        Assert.Contains("empty", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("empty", []))).Error.Problem, StringComparison.Ordinal);
        var tiny = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("tiny", [1, 2, 3])));
        Assert.Contains("smaller than one page", tiny.Error.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Concurrent_readers_see_the_same_bytes()
    {
        byte[] file = CaptureBuilder.Kdump(256, _ => true, "zlib");
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("k.par", file), new ParserLimits { DecodeCacheBytes = 16 * 4096 });
        Parallel.For(0, 8, worker =>
        {
            var random = new Random(worker);
            byte[] buffer = new byte[700];
            for (int i = 0; i < 2000; i++)
            {
                ulong pa = (ulong)random.Next(0, 256 * 4096 - 700);
                Assert.Equal(700, memory.Read(pa, buffer));
                Assert.True(CaptureBuilder.Pattern(pa & ~7UL, 712).AsSpan((int)(pa & 7), 700).SequenceEqual(buffer));
            }
        });
    }

    [Fact]
    public void Raw_is_the_fallback_and_detection_ignores_the_extension()
    {
        byte[] lime = CaptureBuilder.Lime((0, 0x2000));
        using (RunMappedMemory m = CaptureOpener.Open(_dir.Write("image.raw", lime)))
        {
            Assert.Equal("LiME", m.Metadata.Format);
        }
        byte[] raw = CaptureBuilder.Pattern(0, 0x3000);
        using RunMappedMemory r = CaptureOpener.Open(_dir.Write("image.lime", raw));
        Assert.StartsWith("raw", r.Metadata.Format, StringComparison.Ordinal);
        Assert.Equal(new PhysicalRun(0, 0x3000, 0), Assert.Single(r.Runs));
    }
}
