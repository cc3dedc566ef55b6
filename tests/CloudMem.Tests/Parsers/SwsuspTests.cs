using System.Buffers.Binary;
using System.Text.Json;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Cli;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Formats.Swsusp;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Linux hibernation images (swsusp): round trips through our writer (which lays images out as
/// kernel/power/swap.c and snapshot.c do), swap areas inside disk images and swap files, and hostile input.
/// </summary>
public sealed class SwsuspTests : IDisposable
{
    private const int Page = 4096;
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// A LiME capture with three ranges (PFNs not consecutive) whose pages are pattern, all-zero or random
    /// (incompressible): 547 pages (93 all-zero), so an uncompressed image without zero-page flags needs two swap map pages.
    /// </summary>
    private string SyntheticSource()
    {
        string path = _dir.File("source.lime");
        if (File.Exists(path))
        {
            return path;
        }
        var random = new Random(1234);
        using var file = File.Create(path);
        foreach ((ulong start, int pages) in new[] { (0x0UL, 384), (0x400000UL, 160), (0x1000000UL, 3) })
        {
            byte[] header = new byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(header, 0x4C694D45);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8), start);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), start + ((ulong)pages * Page) - 1);
            file.Write(header);
            for (int i = 0; i < pages; i++)
            {
                ulong pa = start + ((ulong)i * Page);
                byte[] page = i % 5 == 0 && start != 0x1000000 ? new byte[Page] : CaptureBuilder.Pattern(pa, Page);
                if (i % 7 == 1)
                {
                    random.NextBytes(page);
                }
                file.Write(page);
            }
        }
        return path;
    }

    private string WriteImage(string name, SwsuspImageOptions options, byte[]? prefix = null, string? source = null)
    {
        string path = _dir.File(name);
        using RunMappedMemory memory = CaptureOpener.Open(source ?? SyntheticSource());
        using (var output = File.Create(path))
        {
            if (prefix is not null)
            {
                output.Write(prefix);
            }
            SwsuspImage.Write(memory, data => output.Write(data), options, _dir.Path);
        }
        return path;
    }

    private static void AssertSameMemory(string sourcePath, string imagePath, ParserLimits? limits = null)
    {
        using RunMappedMemory source = CaptureOpener.Open(sourcePath);
        using RunMappedMemory image = CaptureOpener.Open(imagePath, limits);
        Assert.Equal("Linux hibernation image (swsusp)", image.Metadata.Format);
        byte[] a = new byte[1 << 20];
        byte[] b = new byte[1 << 20];
        ulong bytes = 0;
        foreach (PhysicalRun run in source.Runs)
        {
            for (ulong pa = run.PhysicalAddress; pa < run.End; pa += (ulong)a.Length)
            {
                int length = (int)Math.Min((ulong)a.Length, run.End - pa);
                Assert.Equal(length, source.Read(pa, a.AsSpan(0, length)));
                Assert.True(image.Read(pa, b.AsSpan(0, length)) == length, $"short read at 0x{pa:X}");
                Assert.True(a.AsSpan(0, length).SequenceEqual(b.AsSpan(0, length)), $"bytes differ in 0x{pa:X}+0x{length:X}");
                bytes += (ulong)length;
            }
        }
        Assert.Equal(source.TotalBytes(), bytes);
    }

    private static DumpFormatException OpenFails(string path, ParserLimits? limits = null)
        => Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, limits).Dispose());

    [SkippableTheory]
    [InlineData(SwsuspCompressionKind.None, true)]
    [InlineData(SwsuspCompressionKind.Lzo, true)]
    [InlineData(SwsuspCompressionKind.Lz4, true)]
    [InlineData(SwsuspCompressionKind.None, false)]
    [InlineData(SwsuspCompressionKind.Lzo, false)]
    public void Synthetic_round_trip(SwsuspCompressionKind compression, bool flagZeroPages)
    {
        string image = WriteImage($"s-{compression}-{flagZeroPages}.swap", new SwsuspImageOptions { Compression = compression, FlagZeroPages = flagZeroPages, Cr3 = 0x1234000 });
        AssertSameMemory(SyntheticSource(), image);
        using RunMappedMemory memory = CaptureOpener.Open(image);
        CaptureMetadata m = memory.Metadata;
        Assert.Equal(compression.ToString().ToLowerInvariant(), m.Get("compression"));
        Assert.Equal("547", (long.Parse(m.Get("imagePages")!) + long.Parse(m.Get("zeroPages")!)).ToString());
        Assert.Equal(flagZeroPages ? "93" : "0", m.Get("zeroPages"));
        Assert.Equal("2", m.Get("metaPages"));
        Assert.Equal("0x1234000", m.Get("cr3"));
        Assert.Contains(m.Cpus, c => c.TryGet("cr3", out ulong cr3) && cr3 == 0x1234000);
        Assert.Equal(compression == SwsuspCompressionKind.None && !flagZeroPages ? "2" : "1", m.Get("mapPages"));
        Assert.Empty(m.Warnings);
        Assert.Contains(memory.Runs, r => r.Storage == RunStorage.Zero == flagZeroPages);
    }

    [SkippableTheory]
    [InlineData("lzo")]
    [InlineData("none")]
    public void Real_fixture_round_trip(string variant)
    {
        string raw = Fixture.Require("memory.raw");
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        string output = _dir.File($"memory-{variant}.swap");
        // The converter reads the written file back through our reader and compares every captured byte.
        ConvertResult result = CaptureConverter.Convert(raw, memory, "swsusp", output, variant);
        Assert.True(result.Verified);
        Assert.Equal(0UL, result.UnreadableBytes);
        using RunMappedMemory image = CaptureOpener.Open(output);
        Assert.Equal(variant, image.Metadata.Get("compression"));
        Assert.Equal(memory.TotalBytes(), image.TotalBytes());
        long saved = long.Parse(image.Metadata.Get("imagePages")!) + long.Parse(image.Metadata.Get("zeroPages")!);
        Assert.Equal((long)(memory.TotalBytes() / Page), saved);
    }

    [SkippableFact]
    public void Utsname_header_is_reported()
    {
        var uts = new SwsuspUts("6.1.0-test-arm64", "#1 SMP PREEMPT Debian 6.1.0", "aarch64", "guest", (6u << 16) | (1u << 8));
        string image = WriteImage("uts.swap", new SwsuspImageOptions { Uts = uts });
        using RunMappedMemory memory = CaptureOpener.Open(image);
        Assert.Equal("6.1.0-test-arm64", memory.Metadata.Get("kernelRelease"));
        Assert.Equal("aarch64", memory.Metadata.Get("machine"));
        Assert.Equal("6.1.0", memory.Metadata.Get("versionCode"));
        Assert.Null(memory.Metadata.Get("cr3"));
    }

    [SkippableTheory]
    [InlineData(1024 * 1024, SwsuspCompressionKind.Lzo)]
    [InlineData(63 * 512, SwsuspCompressionKind.None)]
    public void Swap_partition_inside_a_disk_image(int offset, SwsuspCompressionKind compression)
    {
        byte[] prefix = new byte[offset];
        new Random(7).NextBytes(prefix);
        string image = WriteImage($"disk-{offset}.img", new SwsuspImageOptions { Compression = compression }, prefix);
        AssertSameMemory(SyntheticSource(), image);
        using RunMappedMemory memory = CaptureOpener.Open(image);
        Assert.Equal($"0x{offset:X}", memory.Metadata.Get("swapAreaOffset"));
    }

    [SkippableTheory]
    [InlineData(SwsuspCompressionKind.None)]
    [InlineData(SwsuspCompressionKind.Lzo)]
    public void Swap_file_map_entries_are_device_pages(SwsuspCompressionKind compression)
    {
        string image = WriteImage($"file-{compression}.swap", new SwsuspImageOptions { Compression = compression, ResumeOffset = 1_000_000 });
        AssertSameMemory(SyntheticSource(), image);
        using RunMappedMemory memory = CaptureOpener.Open(image);
        Assert.Equal("1000000", memory.Metadata.Get("resumeOffset"));
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("resume_offset", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void Swap_area_without_an_image_is_a_clear_error()
    {
        byte[] file = File.ReadAllBytes(WriteImage("plain.swap", new SwsuspImageOptions()));
        "SWAPSPACE2"u8.CopyTo(file.AsSpan(0xFF6));
        string path = _dir.Write("noimage.swap", file);
        DumpFormatException e = OpenFails(path);
        Assert.Contains("swap area holds no hibernation image", e.Message, StringComparison.Ordinal);
        Assert.Equal("swsusp", e.Error.Format);
        Assert.Equal(0xFF6, e.Error.FileOffset);

        // The signature of older kernels opens the same layout.
        "LINHIB0001"u8.CopyTo(file.AsSpan(0xFF6));
        CaptureOpener.Open(_dir.Write("linhib.swap", file)).Dispose();

        "S2SUSPEND\0"u8.CopyTo(file.AsSpan(0xFF6));
        Assert.Contains("uswsusp", OpenFails(_dir.Write("uswsusp.swap", file)).Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void A_file_without_a_swap_header_is_not_swsusp()
    {
        byte[] noise = new byte[(2 * 1024 * 1024) + 100];
        new Random(3).NextBytes(noise);
        string path = _dir.Write("noise.bin", noise);
        using (RunMappedMemory memory = CaptureOpener.Open(path))
        {
            Assert.StartsWith("raw", memory.Metadata.Format, StringComparison.Ordinal);
        }
        DumpFormatException e = Assert.Throws<DumpFormatException>(() => CaptureOpener.OpenAs(path, "swsusp").Dispose());
        Assert.Contains("no swap header", e.Message, StringComparison.Ordinal);
        Assert.Contains("smaller than a swap header page", Assert.Throws<DumpFormatException>(() => CaptureOpener.OpenAs(_dir.Write("tiny.bin", [1, 2, 3]), "swsusp").Dispose()).Message, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(SwsuspCompressionKind.None, 5)]   // header, map, swsusp_info, two PFN list pages
    [InlineData(SwsuspCompressionKind.Lzo, 4)]    // header, map, swsusp_info, first chunk (PFN list)
    public void Every_prefix_of_the_header_pages_fails_cleanly(SwsuspCompressionKind compression, int headerPages)
    {
        byte[] file = File.ReadAllBytes(WriteImage($"prefix-{compression}.swap", new SwsuspImageOptions { Compression = compression }));
        var lengths = new SortedSet<int>();
        for (int length = 0; length < headerPages * Page; length += 64)
        {
            lengths.Add(length);
        }
        for (int p = 1; p <= headerPages; p++)
        {
            lengths.Add((p * Page) - 1);
            lengths.Add((p * Page) + 1);
        }
        lengths.RemoveWhere(l => l == 0 || l >= headerPages * Page);
        string path = _dir.File($"prefix-{compression}.part");
        foreach (int length in lengths)
        {
            File.WriteAllBytes(path, file.AsSpan(0, length).ToArray());
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
            Assert.DoesNotContain('\n', e.Message);
        }
        // Whole pages of the image cut off: a clear error about the truncated copy.
        File.WriteAllBytes(path, file.AsSpan(0, file.Length - Page).ToArray());
        Assert.Contains("truncated", OpenFails(path).Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Map_chains_that_loop_or_leave_the_file_are_rejected()
    {
        byte[] good = File.ReadAllBytes(WriteImage("chain.swap", new SwsuspImageOptions { Compression = SwsuspCompressionKind.None, FlagZeroPages = false }));
        // Map page 0 is swap page 1; its next_swap is at 0x1FF8.
        byte[] loop = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(loop.AsSpan(Page + 0xFF8), 1);
        DumpFormatException e = OpenFails(_dir.Write("loop.swap", loop));
        Assert.Contains("loops back", e.Message, StringComparison.Ordinal);
        Assert.Equal(Page + 0xFF8, e.Error.FileOffset);

        byte[] outside = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(outside.AsSpan(Page + 0xFF8), 0xFFFF_FFFF);
        Assert.Contains("outside the swap area", OpenFails(_dir.Write("next-outside.swap", outside)).Message, StringComparison.Ordinal);

        byte[] entry = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(Page + (3 * 8)), 0x7FFF_FFFF);
        e = OpenFails(_dir.Write("entry-outside.swap", entry));
        Assert.Contains("entries[3]", e.Error.Structure, StringComparison.Ordinal);

        // Entries repeating one page: a small file must not describe an unbounded stream.
        byte[] repeat = (byte[])good.Clone();
        for (int k = 0; k < 511; k++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(repeat.AsSpan(Page + (k * 8)), 2);
        }
        for (int k = 0; k < 511; k++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(repeat.AsSpan((513 * Page) + (k * 8)), 2);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(repeat.AsSpan((513 * Page) + 0xFF8), 2);
        Assert.Contains("more pages than the swap area holds", OpenFails(_dir.Write("repeat.swap", repeat)).Message, StringComparison.Ordinal);

        byte[] image = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(0xFE0), 0xFFFF_FFFF_FFFF);
        Assert.Contains("outside the swap area", OpenFails(_dir.Write("image-outside.swap", image)).Message, StringComparison.Ordinal);
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(0xFE0), 0);
        Assert.Contains("image", OpenFails(_dir.Write("image-zero.swap", image)).Error.Structure, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Counts_from_swsusp_info_are_checked()
    {
        byte[] good = File.ReadAllBytes(WriteImage("counts.swap", new SwsuspImageOptions { Compression = SwsuspCompressionKind.None }));
        const int info = 2 * Page; // swap page 2
        byte[] huge = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(huge.AsSpan(info + 0x1A8), 1UL << 40);
        BinaryPrimitives.WriteUInt64LittleEndian(huge.AsSpan(info + 0x1B0), (1UL << 40) * Page);
        Assert.Contains("MaxSwsuspPages", OpenFails(_dir.Write("huge.swap", huge)).Message, StringComparison.Ordinal);

        byte[] inverted = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(inverted.AsSpan(info + 0x1A0), 1UL << 20);
        Assert.Contains("swsusp_info.pages", OpenFails(_dir.Write("inverted.swap", inverted)).Error.Structure, StringComparison.Ordinal);

        byte[] fewer = (byte[])good.Clone();
        ulong imagePages = BinaryPrimitives.ReadUInt64LittleEndian(good.AsSpan(info + 0x1A0));
        ulong pages = BinaryPrimitives.ReadUInt64LittleEndian(good.AsSpan(info + 0x1A8));
        BinaryPrimitives.WriteUInt64LittleEndian(fewer.AsSpan(info + 0x1A0), imagePages - 1);
        BinaryPrimitives.WriteUInt64LittleEndian(fewer.AsSpan(info + 0x1A8), pages - 1);
        BinaryPrimitives.WriteUInt64LittleEndian(fewer.AsSpan(info + 0x1B0), (pages - 1) * Page);
        Assert.Contains("image_pages", OpenFails(_dir.Write("fewer.swap", fewer)).Error.Structure, StringComparison.Ordinal);

        byte[] pfn = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(pfn.AsSpan((3 * Page) + 16), 1UL << 50);
        Assert.Contains("pfn_list[0][2]", OpenFails(_dir.Write("pfn.swap", pfn)).Error.Structure, StringComparison.Ordinal);

        byte[] descending = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(descending.AsSpan((3 * Page) + 16), 0);
        Assert.Contains("precedes", OpenFails(_dir.Write("descending.swap", descending)).Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Limits_reject_and_accept()
    {
        string plain = WriteImage("limits-none.swap", new SwsuspImageOptions { Compression = SwsuspCompressionKind.None, FlagZeroPages = false });
        string lzo = WriteImage("limits-lzo.swap", new SwsuspImageOptions { Compression = SwsuspCompressionKind.Lzo });
        long pages;
        int chunks;
        using (RunMappedMemory m = CaptureOpener.Open(plain))
        {
            pages = long.Parse(m.Metadata.Get("pages")!);
            Assert.Equal("2", m.Metadata.Get("mapPages"));
        }
        using (RunMappedMemory m = CaptureOpener.Open(lzo))
        {
            chunks = int.Parse(m.Metadata.Get("chunks")!);
        }
        Assert.Contains("MaxSwsuspPages", OpenFails(plain, new ParserLimits { MaxSwsuspPages = pages - 1 }).Message, StringComparison.Ordinal);
        CaptureOpener.Open(plain, new ParserLimits { MaxSwsuspPages = pages }).Dispose();
        Assert.Contains("MaxSwsuspMapPages", OpenFails(plain, new ParserLimits { MaxSwsuspMapPages = 1 }).Message, StringComparison.Ordinal);
        CaptureOpener.Open(plain, new ParserLimits { MaxSwsuspMapPages = 2 }).Dispose();
        Assert.Contains("MaxSwsuspChunks", OpenFails(lzo, new ParserLimits { MaxSwsuspChunks = chunks - 1 }).Message, StringComparison.Ordinal);
        CaptureOpener.Open(lzo, new ParserLimits { MaxSwsuspChunks = chunks }).Dispose();
        Assert.Contains("MaxRuns", OpenFails(lzo, new ParserLimits { MaxRuns = 3 }).Message, StringComparison.Ordinal);
    }

    /// <summary>Chunks found by walking the image the simple way: (file offset, compressed length).</summary>
    private static List<(int Offset, int Length)> Chunks(byte[] file)
    {
        var stream = new List<int>();
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(0xFE0));
        while (sector != 0)
        {
            int at = (int)sector * Page;
            int k = 0;
            for (; k < 511; k++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(at + (k * 8)));
                if (entry == 0)
                {
                    break;
                }
                stream.Add((int)entry * Page);
            }
            sector = k == 511 ? BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(at + 0xFF8)) : 0;
        }
        var chunks = new List<(int, int)>();
        for (int i = 1; i < stream.Count;)
        {
            int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(stream[i]));
            chunks.Add((stream[i], length));
            i += (length + 8 + Page - 1) / Page;
        }
        return chunks;
    }

    [SkippableTheory]
    [InlineData(SwsuspCompressionKind.Lzo)]
    [InlineData(SwsuspCompressionKind.Lz4)]
    public void Corrupt_data_chunk_gives_short_reads_not_exceptions(SwsuspCompressionKind compression)
    {
        byte[] file = File.ReadAllBytes(WriteImage($"corrupt-{compression}.swap", new SwsuspImageOptions { Compression = compression }));
        List<(int Offset, int Length)> chunks = Chunks(file);
        Assert.True(chunks.Count >= 3);
        (int last, int length) = chunks[^1];
        byte[] corrupt = (byte[])file.Clone();
        // All 0xFF: no LZO end marker; an LZ4 literal length running past the input. (Damage to part of an LZ4 block
        // can decode to wrong bytes of the right length: LZ4 blocks carry no checksum; the header's crc32 covers the stream.)
        corrupt.AsSpan(last + 8, length).Fill(0xFF);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write($"corrupt-{compression}-data.swap", corrupt));
        byte[] buffer = new byte[3 * Page];
        int read = memory.Read(0x1000000, buffer); // the last pages saved are in the last chunk
        Assert.True(read < buffer.Length, $"read {read} of {buffer.Length}");
        Assert.Equal(Page, memory.Read(0x2000, buffer.AsSpan(0, Page)));
        Assert.True(buffer.AsSpan(0, Page).SequenceEqual(CaptureBuilder.Pattern(0x2000, Page)));

        // The first chunk holds the PFN list: without it there is no run table.
        byte[] list = (byte[])file.Clone();
        list.AsSpan(chunks[0].Offset + 8, 64).Fill(0xFF);
        Assert.Contains("PFN list", OpenFails(_dir.Write($"corrupt-{compression}-list.swap", list)).Message, StringComparison.Ordinal);

        byte[] badLength = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(badLength.AsSpan(chunks[1].Offset), 1UL << 40);
        Assert.Contains("chunk[1].length", OpenFails(_dir.Write($"corrupt-{compression}-length.swap", badLength)).Error.Structure, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Cli_info_lists_format_runs_and_metadata()
    {
        string image = WriteImage("cli.swap", new SwsuspImageOptions { Compression = SwsuspCompressionKind.Lzo });
        (int exit, string stdout, string err) = CliProcessTests.Run("info", image, "--output", "json");
        Assert.True(exit == 0, err);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Equal("Linux hibernation image (swsusp)", doc.RootElement.GetProperty("format").GetString());
        Assert.True(doc.RootElement.GetProperty("runCount").GetInt32() > 3);
        Assert.Contains("lzo", stdout, StringComparison.Ordinal);
        (exit, stdout, err) = CliProcessTests.Run("info", image);
        Assert.True(exit == 0, err);
        Assert.Contains("imagePages", stdout, StringComparison.Ordinal);
        Assert.Contains("compression", stdout, StringComparison.Ordinal);
    }
}
