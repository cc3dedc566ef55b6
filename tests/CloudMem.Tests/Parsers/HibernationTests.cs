using System.Buffers.Binary;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Formats.Hibernation;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Windows 8+ hibernation files: synthetic files for every PO_MEMORY_IMAGE layout (built here from formats.md section 7,
/// not by our writer), every compression type, hostile headers and sets, and round trips through the hiberfil writer.
/// No real Windows hiberfil.sys is available: the layouts come from LeechCore's table and Volatility 3.
/// </summary>
public sealed class HibernationTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> LayoutNames() => [.. HibernationLayout.Profiles.Select(p => p.Name)];

    private static HibernationProfile Layout(string name) => HibernationLayout.FindByName(name)!;

    private static ulong[] Range(ulong first, int count) => Enumerable.Range(0, count).Select(i => first + (ulong)i).ToArray();

    /// <summary>A small file: boot pages 0..19 (two sets), kernel pages 0x100..0x13F and 0x1000..0x1002 in four sets.</summary>
    private static HiberfilBuilder Sample(string layout, HiberCodec codec = HiberCodec.Plain)
    {
        var b = new HiberfilBuilder(Layout(layout));
        b.Boot.Add(new HiberSet(Range(0, 16), codec));
        b.Boot.Add(new HiberSet(Range(16, 4), codec));
        b.Kernel.Add(new HiberSet(Range(0x100, 16), codec));
        b.Kernel.Add(new HiberSet([.. Range(0x110, 8), .. Range(0x1000, 3)], codec)); // two descriptors in one set
        b.Kernel.Add(new HiberSet(Range(0x118, 16), codec));
        b.Kernel.Add(new HiberSet(Range(0x128, 0x18), codec));                         // 24 pages: two descriptors
        return b;
    }

    private static readonly PhysicalRun[] s_sampleRuns =
    [
        new(0, 20 * 4096UL, 0, RunStorage.Decoded),
        new(0x100000, 0x40 * 4096UL, 0, RunStorage.Decoded),
        new(0x1000000, 3 * 4096UL, 0, RunStorage.Decoded),
    ];

    private static void AssertPages(IPhysicalMemory memory, IEnumerable<ulong> pfns)
    {
        byte[] page = new byte[4096];
        foreach (ulong pfn in pfns)
        {
            Array.Clear(page);
            Assert.Equal(4096, memory.Read(pfn * 4096, page));
            Assert.True(HiberfilBuilder.Page(pfn).AsSpan().SequenceEqual(page), $"page 0x{pfn:X} differs");
        }
    }

    private static ulong[] SamplePfns => [.. Range(0, 20), .. Range(0x100, 0x40), .. Range(0x1000, 3)];

    private RunMappedMemory OpenBytes(byte[] file, ParserLimits? limits = null, string name = "hiberfil.sys")
        => CaptureOpener.Open(_dir.Write(name, file), limits);

    private DumpFormatException OpenFails(byte[] file, ParserLimits? limits = null)
        => Assert.Throws<DumpFormatException>(() => OpenBytes(file, limits).Dispose());

    [SkippableTheory]
    [MemberData(nameof(LayoutNames))]
    public void Every_layout_is_chosen_by_LengthSelf_and_reads_both_restoration_sets(string layout)
    {
        using RunMappedMemory memory = OpenBytes(Sample(layout).Build());
        Assert.Equal("Windows hibernation file (hiberfil.sys)", memory.Metadata.Format);
        Assert.StartsWith(layout + ":", memory.Metadata.Get("layout"));
        Assert.Equal(Layout(layout).Is32Bit ? "x86" : "x64", memory.Metadata.Get("architecture"));
        Assert.Equal("20", memory.Metadata.Get("numPagesForLoader"));
        Assert.Equal("67", memory.Metadata.Get("kernelPagesProcessed"));
        Assert.Equal("6 (boot 2, kernel 4)", memory.Metadata.Get("compressionSets"));
        Assert.Equal("2024-01-17 21:20:00Z", memory.Metadata.Get("systemTime"));
        Assert.Empty(memory.Metadata.Warnings);
        Assert.Equal(s_sampleRuns.Select(r => (r.PhysicalAddress, r.Length)), memory.Runs.Select(r => (r.PhysicalAddress, r.Length)));
        AssertPages(memory, SamplePfns);
        byte[] buffer = new byte[0x3000];
        Assert.Equal(0x1000, memory.Read(19 * 4096, buffer));             // page 19, then the hole at page 20
        Assert.Equal(0, memory.Read(0x50000, buffer));
        Assert.Equal(0, memory.Read(ulong.MaxValue - 5, buffer));
        Assert.Equal(0L, memory.DecodeFailures);
    }

    [SkippableTheory]
    [InlineData(HiberCodec.Plain)]
    [InlineData(HiberCodec.LiteralPlain)]
    [InlineData(HiberCodec.Huffman2)]
    [InlineData(HiberCodec.Huffman3)]
    [InlineData(HiberCodec.Type1Huffman)]
    [InlineData(HiberCodec.Type1Plain)]
    [InlineData(HiberCodec.Stored)]
    public void Every_compression_type_decodes(HiberCodec codec)
    {
        var b = new HiberfilBuilder(Layout("win10-1809"));
        b.Boot.Add(new HiberSet(Range(0, 16), codec));
        b.Kernel.Add(new HiberSet([.. Range(0x200, 5), 0x300, .. Range(0x400, 10)], codec));
        using RunMappedMemory memory = OpenBytes(b.Build());
        AssertPages(memory, [.. Range(0, 16), .. Range(0x200, 5), 0x300, .. Range(0x400, 10)]);
        string kinds = memory.Metadata.Get("setsByCompression")!;
        string expected = codec switch
        {
            HiberCodec.Plain or HiberCodec.LiteralPlain => "Xpress LZ77 2,",
            HiberCodec.Huffman2 or HiberCodec.Huffman3 => "Xpress Huffman 2,",
            HiberCodec.Type1Huffman or HiberCodec.Type1Plain => "type 1 (Huffman, else LZ77) 2,",
            _ => "stored 2",
        };
        Assert.Contains(expected, kinds, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Reads_across_extents_and_sets_and_from_the_cache()
    {
        using RunMappedMemory memory = OpenBytes(Sample("win11-24h2").Build());
        byte[] all = new byte[0x40 * 4096];
        Assert.Equal(all.Length, memory.Read(0x100000, all));                // 4 sets, 5 extents, one run
        byte[] expected = Range(0x100, 0x40).SelectMany(HiberfilBuilder.Page).ToArray();
        Assert.True(expected.AsSpan().SequenceEqual(all));
        byte[] small = new byte[100];
        Assert.Equal(100, memory.Read(0x100000 + 0xFFF0 - 50, small));     // inside a unit: via the cache
        Assert.True(expected.AsSpan(0xFFF0 - 50, 100).SequenceEqual(small));
        Parallel.For(0, 8, t =>
        {
            byte[] page = new byte[4096];
            foreach (ulong pfn in SamplePfns.Reverse().Skip(t))
            {
                Assert.Equal(4096, memory.Read(pfn * 4096, page));
                Assert.True(HiberfilBuilder.Page(pfn).AsSpan().SequenceEqual(page));
            }
        });
    }

    [SkippableFact]
    public void Wiped_header_says_Windows_already_resumed()
    {
        byte[] file = Sample("win10-1809").Build();
        file.AsSpan(0, 4096).Clear();
        using (RunMappedMemory raw = OpenBytes(file))
        {
            Assert.StartsWith("raw", raw.Metadata.Format);
            Assert.Contains(raw.Metadata.Warnings, w => w.Contains("hiberfil.sys", StringComparison.Ordinal) && w.Contains("wipes", StringComparison.Ordinal));
        }
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.OpenAs(_dir.Write("wiped.sys", file), "hiberfil").Dispose());
        Assert.Equal("hiberfil", e.Error.Format);
        Assert.Contains("Windows wipes", e.Message, StringComparison.Ordinal);
        Assert.Contains("resumed", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Other_signatures()
    {
        var b = Sample("win10-1809");
        b.Signature = HibernationLayout.SignatureWake;
        using (RunMappedMemory wake = OpenBytes(b.Build(), name: "wake.sys"))
        {
            Assert.Equal("WAKE", wake.Metadata.Get("signature"));
            Assert.Contains(wake.Metadata.Warnings, w => w.StartsWith("signature WAKE", StringComparison.Ordinal));
            AssertPages(wake, SamplePfns);
        }
        b.Signature = HibernationLayout.SignatureRstr;
        using (RunMappedMemory rstr = OpenBytes(b.Build(), name: "rstr.sys"))
        {
            Assert.Contains(rstr.Metadata.Warnings, w => w.Contains("not verified", StringComparison.Ordinal));
        }
        b.Signature = HibernationLayout.SignatureLegacyHibr;
        DumpFormatException e = OpenFails(b.Build());
        Assert.Equal("PO_MEMORY_IMAGE.Signature", e.Error.Structure);
        Assert.Contains("XP/Vista/7", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Every_prefix_of_the_header_page_is_a_one_line_error()
    {
        // Every prefix of PO_MEMORY_IMAGE (LengthSelf 0x3E0 bytes), then every 7th up to the first set header.
        byte[] file = Sample("win10-1809").Build();
        string path = _dir.File("prefix.sys");
        for (int length = 1; length <= 4096 + 4; length += length <= 0x3E8 ? 1 : 7)
        {
            File.WriteAllBytes(path, file[..length]);
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            if (length >= 4)
            {
                Assert.Equal("hiberfil", e.Error.Format);
            }
        }
    }

    [SkippableFact]
    public void Truncated_sets_keep_what_is_there_and_never_throw()
    {
        byte[] file = Sample("win10-1809").Build(out HiberLayoutInfo info);
        string path = _dir.File("cut.sys");
        for (int length = 4096 + 5; length < file.Length; length += 331)
        {
            File.WriteAllBytes(path, file[..length]);
            if (!CaptureOpener.TryOpen(path, out RunMappedMemory? memory, out FormatError? error))
            {
                Assert.Equal("hiberfil", error!.Format);
                continue;
            }
            using (memory)
            {
                Assert.Contains(memory!.Metadata.Warnings, w => w.StartsWith("file is truncated", StringComparison.Ordinal));
                byte[] buffer = new byte[4096];
                foreach (ulong pfn in SamplePfns)
                {
                    int got = memory.Read(pfn * 4096, buffer);
                    Assert.True(got is 0 or 4096);
                    if (got == 4096)
                    {
                        Assert.True(HiberfilBuilder.Page(pfn).AsSpan().SequenceEqual(buffer));
                    }
                }
            }
        }
        // Cut inside the second kernel set's data: the first kernel set is still readable.
        File.WriteAllBytes(path, file[..(int)(info.SetData[3] + 10)]);
        using RunMappedMemory cut = CaptureOpener.Open(path);
        AssertPages(cut, [.. Range(0, 20), .. Range(0x100, 16)]);
        Assert.Contains(cut.Metadata.Warnings, w => w.Contains("kernel restoration set stops", StringComparison.Ordinal) && w.Contains("after 16 of 67 pages", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void Named_header_corruptions_are_errors_with_field_and_offset()
    {
        HibernationProfile p = Layout("win10-1809");
        byte[] good = Sample(p.Name).Build();

        DumpFormatException Corrupt(int offset, ulong value, int size = 8)
        {
            byte[] file = (byte[])good.Clone();
            if (size == 8)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(offset), value);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(offset), (uint)value);
            }
            return OpenFails(file);
        }

        DumpFormatException e = Corrupt(0xC, 0x123, 4);
        Assert.Equal(("PO_MEMORY_IMAGE.LengthSelf", 0xCL), (e.Error.Structure, e.Error.FileOffset));
        Assert.Contains("0x3E0 win10-1809", e.Message, StringComparison.Ordinal);

        e = Corrupt(p.PageSize, 8192, 4);
        Assert.Equal(("PO_MEMORY_IMAGE.PageSize", (long)p.PageSize), (e.Error.Structure, e.Error.FileOffset));

        e = Corrupt(p.FirstBootRestorePage, 0x10000);
        Assert.Equal(("PO_MEMORY_IMAGE.FirstBootRestorePage", (long)p.FirstBootRestorePage), (e.Error.Structure, e.Error.FileOffset));
        Assert.Contains("past the end of the file", e.Message, StringComparison.Ordinal);

        e = Corrupt(p.FirstKernelRestorePage, ulong.MaxValue);
        Assert.Equal("PO_MEMORY_IMAGE.FirstKernelRestorePage", e.Error.Structure);

        e = Corrupt(p.FirstKernelRestorePage, 0);
        Assert.Contains("the header page", e.Message, StringComparison.Ordinal);

        e = Corrupt(p.HighestPhysicalPage, 1UL << 50);
        Assert.Equal("PO_MEMORY_IMAGE.HighestPhysicalPage", e.Error.Structure);

        e = Corrupt(p.KernelPagesProcessed, ulong.MaxValue);
        Assert.Equal(("PO_MEMORY_IMAGE.KernelPagesProcessed", (long)p.KernelPagesProcessed), (e.Error.Structure, e.Error.FileOffset));
        Assert.Contains("ParserLimits.MaxHibernationPages", e.Message, StringComparison.Ordinal);

        e = Corrupt(p.NumPagesForLoader, 1UL << 40);
        Assert.Equal("PO_MEMORY_IMAGE.NumPagesForLoader", e.Error.Structure);

        // More pages declared than the sets hold: the walk runs into zero padding after the last set.
        e = Corrupt(p.NumPagesForLoader, 21);
        Assert.Equal("boot compression set[2]", e.Error.Structure);
        Assert.Contains("no page descriptors", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Named_set_corruptions_are_errors_with_offset()
    {
        byte[] good = Sample("win10-1809").Build(out HiberLayoutInfo info);
        long kernel1 = info.SetHeaders[3];

        DumpFormatException SetHeader(long at, uint header)
        {
            byte[] file = (byte[])good.Clone();
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan((int)at), header);
            return OpenFails(file);
        }

        uint original = BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan((int)kernel1));
        DumpFormatException e = SetHeader(kernel1, original & ~0xFFu);
        Assert.Equal(("kernel compression set[1]", kernel1), (e.Error.Structure, e.Error.FileOffset));
        e = SetHeader(kernel1, original & 0xC00000FFu);
        Assert.Contains("stored size of 0", e.Message, StringComparison.Ordinal);

        // A descriptor whose page number is beyond the physical-address limit.
        byte[] file = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan((int)kernel1 + 4), (1UL << 45) << 4);
        e = OpenFails(file);
        Assert.Equal(("kernel compression set[1].descriptor[0]", kernel1 + 4), (e.Error.Structure, e.Error.FileOffset));

        // A stored size pointing past the end of the file: the set chain stops there, with a warning.
        file = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan((int)kernel1), (original & 0xC00000FFu) | (0x3FFFFFu << 8));
        using RunMappedMemory memory = OpenBytes(file, name: "past.sys");
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("kernel restoration set stops", StringComparison.Ordinal));
        AssertPages(memory, Range(0x100, 16));
        Assert.Equal(0, memory.Read(0x110 * 4096, new byte[16]));
    }

    [SkippableFact]
    public void Limits_reject_hostile_counts_and_accept_reasonable_ones()
    {
        byte[] file = Sample("win10-1809").Build();
        // Kernel set 67 pages; 6 sets; largest set 24 pages (two descriptors).
        Assert.Contains("ParserLimits.MaxHibernationPages", OpenFails(file, new ParserLimits { MaxHibernationPages = 66 }).Message, StringComparison.Ordinal);
        OpenBytes(file, new ParserLimits { MaxHibernationPages = 67 }).Dispose();
        Assert.Contains("ParserLimits.MaxHibernationSets", OpenFails(file, new ParserLimits { MaxHibernationSets = 5 }).Message, StringComparison.Ordinal);
        OpenBytes(file, new ParserLimits { MaxHibernationSets = 6 }).Dispose();
        DumpFormatException e = OpenFails(file, new ParserLimits { MaxHibernationSetPages = 23 });
        Assert.Contains("ParserLimits.MaxHibernationSetPages", e.Message, StringComparison.Ordinal);
        Assert.Equal("kernel compression set[3].descriptor[1]", e.Error.Structure);
        OpenBytes(file, new ParserLimits { MaxHibernationSetPages = 24 }).Dispose();
        Assert.Contains("ParserLimits.MaxRuns", OpenFails(file, new ParserLimits { MaxRuns = 2 }).Message, StringComparison.Ordinal);
        OpenBytes(file, new ParserLimits { MaxRuns = 3 }).Dispose();
        // A set of 255 descriptors of 16 pages (4080 pages) is refused by the default limit of 256 pages per set.
        var big = new HiberfilBuilder(Layout("win10-1809"));
        big.Kernel.Add(new HiberSet(Range(0, 4080), HiberCodec.Stored));
        Assert.Contains("ParserLimits.MaxHibernationSetPages", OpenFails(big.Build()).Message, StringComparison.Ordinal);
        OpenBytes(big.Build(), new ParserLimits { MaxHibernationSetPages = 4080 }, "big.sys").Dispose();
    }

    [SkippableFact]
    public void Corrupt_compressed_data_is_a_short_read_never_an_exception()
    {
        foreach (HiberCodec codec in new[] { HiberCodec.Plain, HiberCodec.Huffman2, HiberCodec.Type1Huffman })
        {
            byte[] file = Sample("win10-1809", codec).Build(out HiberLayoutInfo info);
            // Kernel set 1: first bytes 0xFF (plain: a match before the start; Huffman: an over-subscribed code).
            file.AsSpan((int)info.SetData[3], 64).Fill(0xFF);
            // Kernel set 2: truncated data inside the same stored length (zeros: plain ends early, Huffman has no code).
            int set2Length = (int)(info.SetHeaders[5] - info.SetData[4]);
            file.AsSpan((int)info.SetData[4], set2Length).Clear();
            using RunMappedMemory memory = OpenBytes(file, name: $"bad-{codec}.sys");
            AssertPages(memory, [.. Range(0, 20), .. Range(0x100, 16), .. Range(0x128, 0x18)]);
            byte[] buffer = new byte[0x40 * 4096];
            Assert.Equal(16 * 4096, memory.Read(0x100000, buffer));          // stops at the corrupt set
            Assert.Equal(0, memory.Read(0x1000000, buffer.AsSpan(0, 4096)));  // the second descriptor of that set
            Assert.Equal(0, memory.Read(0x118 * 4096, buffer.AsSpan(0, 4096)));
            Assert.True(memory.DecodeFailures >= 3);
            Assert.Contains("compression set", memory.LastDecodeProblem, StringComparison.Ordinal);
            ulong skipped = SequentialReader.ForEachBlock(memory, (_, _) => true);
            Assert.Equal((ulong)(11 + 16) * 4096, skipped);
        }
    }

    [SkippableFact]
    public void Pages_stored_twice_keep_the_first_copy_with_a_warning()
    {
        var b = new HiberfilBuilder(Layout("win8"));
        b.Boot.Add(new HiberSet(Range(0, 8), HiberCodec.Plain));
        b.Kernel.Add(new HiberSet(Range(4, 8), HiberCodec.Plain));
        using RunMappedMemory memory = OpenBytes(b.Build());
        Assert.Contains(memory.Metadata.Warnings, w => w.StartsWith("4 pages are stored more than once", StringComparison.Ordinal));
        Assert.Equal([(0UL, 12 * 4096UL)], memory.Runs.Select(r => (r.PhysicalAddress, r.Length)));
        AssertPages(memory, Range(0, 12));
    }

    [SkippableFact]
    public void Pages_above_HighestPhysicalPage_are_kept_with_a_warning()
    {
        HiberfilBuilder b = Sample("win10-1607");
        b.Highest = 0x200;
        using RunMappedMemory memory = OpenBytes(b.Build());
        Assert.Contains(memory.Metadata.Warnings, w => w.StartsWith("3 stored pages lie above HighestPhysicalPage", StringComparison.Ordinal));
        AssertPages(memory, SamplePfns);
    }

    [SkippableFact]
    public void Info_lists_format_runs_and_metadata()
    {
        string path = _dir.Write("info.sys", Sample("win11").Build());
        using RunMappedMemory memory = CaptureOpener.Open(path);
        CaptureInfo info = CaptureInfo.Build(path, memory, scanBanner: false, CancellationToken.None);
        var writer = new StringWriter();
        CloudMem.Engine.Output.ReportWriter.Write(info, CloudMem.Engine.Output.OutputFormat.Json, writer);
        string json = writer.ToString();
        Assert.Contains("\"format\": \"Windows hibernation file (hiberfil.sys)\"", json, StringComparison.Ordinal);
        Assert.Contains("\"layout\": \"win11: x64 Windows 11", json, StringComparison.Ordinal);
        Assert.Contains("\"runCount\": 3", json, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4096)]
    [InlineData(65536)]
    [InlineData(300_000)]
    public void Compressor_round_trips(int length)
    {
        var random = new Random(length);
        foreach (Func<int, byte> fill in new Func<int, byte>[]
        {
            _ => 0,
            i => (byte)random.Next(),
            i => (byte)(random.Next(8) == 0 ? random.Next() : i % 251 < 200 ? 0 : i / 7),
            i => (byte)((i / 37) % 3),
        })
        {
            byte[] source = Enumerable.Range(0, length).Select(fill).ToArray();
            byte[] compressed = new byte[XpressLz77Compressor.MaxCompressedLength(length)];
            int n = XpressLz77Compressor.Compress(source, compressed);
            Assert.True(n > 0);
            byte[] back = new byte[length];
            Assert.Equal(length, XpressLz77.Decompress(compressed.AsSpan(0, n), back));
            Assert.True(source.AsSpan().SequenceEqual(back));
        }
    }

    [SkippableFact]
    public void Compressor_covers_every_length_escape()
    {
        // Matches of every length from 3 to 300 (nibble, byte and word escapes, both halves of the shared nibble),
        // then one long enough for the 32-bit escape.
        var source = new List<byte>();
        var random = new Random(7);
        for (int length = 3; length <= 300; length++)
        {
            byte[] motif = new byte[8];
            random.NextBytes(motif);
            source.AddRange(motif);
            for (int i = 0; i < length; i++)
            {
                source.Add(motif[i % 8]);
            }
        }
        source.AddRange(new byte[70_000]);
        byte[] input = [.. source];
        byte[] compressed = new byte[XpressLz77Compressor.MaxCompressedLength(input.Length)];
        int n = XpressLz77Compressor.Compress(input, compressed);
        Assert.True(n < input.Length / 2, $"{n} bytes for {input.Length}");
        byte[] back = new byte[input.Length];
        Assert.Equal(input.Length, XpressLz77.Decompress(compressed.AsSpan(0, n), back));
        Assert.True(input.AsSpan().SequenceEqual(back));
        Assert.Equal(-1, XpressLz77Compressor.Compress(input, new byte[10]));
    }

    [SkippableFact]
    public void Writer_round_trips_the_real_raw_capture()
    {
        string rawPath = Fixture.Require("memory.raw");
        using RunMappedMemory raw = CaptureOpener.Open(rawPath);
        ConvertResult result = CaptureConverter.Convert(rawPath, raw, "hiberfil", _dir.File("memory.hiberfil"));
        Assert.True(result.Verified);
        Assert.True((ulong)result.OutputBytes < raw.TotalBytes() / 4, $"{result.OutputBytes} bytes");
        // Convert already re-opened the output with our reader and compared every captured byte with the source.
        using RunMappedMemory back = CaptureOpener.Open(result.Output);
        Assert.StartsWith("win10-1809:", back.Metadata.Get("layout"));
        Assert.Equal(raw.TotalBytes(), back.TotalBytes());
        // The kernel banner reads back at the address where the raw has it.
        CloudMem.Engine.Capture.KernelBanner? expected = CloudMem.Engine.Capture.BannerScanner.FindLinuxBanner(raw);
        Assert.NotNull(expected);
        byte[] banner = new byte[64];
        Assert.Equal(64, back.Read(expected!.PhysicalAddress, banner));
        Assert.StartsWith("Linux version ", System.Text.Encoding.ASCII.GetString(banner));
    }

    [SkippableTheory]
    [InlineData("win10-1809")]
    [InlineData("win8")]
    [InlineData("win11-24h2")]
    [InlineData("x86-win10-1607")]
    public void Writer_round_trips_a_multi_run_capture(string layout)
    {
        // Runs that are not page-aligned, a run below 1 MiB (boot set) and two runs sharing a page.
        byte[] lime = CaptureBuilder.Lime((0x800, 0x2800), (0x9F000, 0x1800), (0xA0900, 0x100), (0x100000, 0x23000), (0x7FFF0000, 0x10010));
        string source = _dir.Write($"src-{layout}.lime", lime);
        using RunMappedMemory memory = CaptureOpener.Open(source);
        ConvertResult result = CaptureConverter.Convert(source, memory, "hiberfil", _dir.File($"out-{layout}.sys"), variant: layout);
        Assert.True(result.Verified);
        using RunMappedMemory back = CaptureOpener.Open(result.Output);
        Assert.StartsWith(layout + ":", back.Metadata.Get("layout"));
        Assert.NotEqual("0", back.Metadata.Get("numPagesForLoader"));
        AssertSameBytes(memory, back);
    }

    private static void AssertSameBytes(IPhysicalMemory expected, IPhysicalMemory actual)
    {
        byte[] buffer = new byte[SequentialReader.DefaultBlockSize];
        ulong compared = 0;
        SequentialReader.ForEachBlock(expected, (pa, data) =>
        {
            Span<byte> back = buffer.AsSpan(0, data.Length);
            Assert.Equal(data.Length, actual.Read(pa, back));
            Assert.True(back.SequenceEqual(data), $"0x{pa:X} differs");
            compared += (ulong)data.Length;
            return true;
        });
        Assert.Equal(expected.TotalBytes(), compared);
    }
}
