using System.Buffers.Binary;
using System.Collections;
using System.Text;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Writing;
using L = CloudMem.VmStateParsers.Formats.Swsusp.SwsuspLayout;

namespace CloudMem.VmStateParsers.Formats.Swsusp;

/// <summary>Compression of a written hibernation image.</summary>
public enum SwsuspCompressionKind
{
    /// <summary>SF_NOCOMPRESS_MODE: stored pages.</summary>
    None,
    /// <summary>LZO1X chunks of 32 pages (the kernel's default).</summary>
    Lzo,
    /// <summary>LZ4 block chunks (SF_COMPRESSION_ALG_LZ4, Linux 6.9+).</summary>
    Lz4,
}

/// <summary>How <see cref="SwsuspImage"/> lays out an image.</summary>
public sealed record SwsuspImageOptions
{
    /// <summary>Compression.</summary>
    public SwsuspCompressionKind Compression { get; init; } = SwsuspCompressionKind.Lzo;

    /// <summary>Flag all-zero pages in the PFN list and leave them out of the data (Linux 6.3+); false writes them like 6.1.</summary>
    public bool FlagZeroPages { get; init; } = true;

    /// <summary>Device page of the swap header: 0 for a swap partition, a swap file's resume_offset otherwise (all map entries are device pages).</summary>
    public ulong ResumeOffset { get; init; }

    /// <summary>When set, swsusp_info carries a utsname (architectures without an arch header); null writes the x86-64 restore record.</summary>
    public SwsuspUts? Uts { get; init; }

    /// <summary>CR3 written into the x86-64 restore record.</summary>
    public ulong Cr3 { get; init; }
}

/// <summary>utsname fields for a generic (non-x86) swsusp_info.</summary>
public sealed record SwsuspUts(string Release, string Version, string Machine, string Nodename, uint VersionCode);

/// <summary>Receives the image's bytes in file order.</summary>
public delegate void SwsuspSink(ReadOnlySpan<byte> data);

/// <summary>
/// Writes a swap area holding a hibernation image of a capture's pages, laid out as the kernel writes one
/// (kernel/power/swap.c, snapshot.c): swap header page with the S1SUSPEND signature and swsusp_header, the
/// swap_map_page chain interleaved with the pages it lists (a map page is allocated before its 511 entries and the
/// next one when it fills), swsusp_info, the PFN list, then the data pages or 32-page compressed chunks
/// (size_t length + data, each from a fresh page). Every page that a run touches is saved.
/// </summary>
public static class SwsuspImage
{
    private const int Page = L.PageSize;

    /// <summary>Writes the image of <paramref name="memory"/> to <paramref name="sink"/>; <paramref name="scratchDirectory"/> holds a temporary file for compressed chunks.</summary>
    /// <returns>Saved pages and bytes of them that could not be read (written as zero).</returns>
    public static (long Pages, ulong Unreadable) Write(IPhysicalMemory memory, SwsuspSink sink, SwsuspImageOptions options, string scratchDirectory,
        Action<ulong>? progress = null, CancellationToken cancellationToken = default)
    {
        List<(ulong Pfn, long Count)> ranges = PageRanges.Widen(memory.Runs, Page)
            .Select(r => (r.FirstPage(Page), (long)r.Pages(Page))).ToList();
        long total = ranges.Sum(r => r.Count);
        byte[] page = new byte[Page];
        ulong unreadable = 0;
        var reader = new PageReader(memory, Page);

        // Pass 1: which pages are all zero.
        var zero = new BitArray((int)Math.Min(total, int.MaxValue));
        long dataPages = total;
        if (options.FlagZeroPages)
        {
            long i = 0;
            foreach ((ulong pfn, long count) in ranges)
            {
                for (long k = 0; k < count; k++, i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    reader.Read((pfn + (ulong)k) * Page, page);
                    if (!page.AsSpan().ContainsAnyExcept((byte)0))
                    {
                        zero[(int)i] = true;
                        dataPages--;
                    }
                }
            }
        }
        long metaPages = (total + L.PfnsPerPage - 1) / L.PfnsPerPage;
        long streamAfterInfo = metaPages + dataPages;
        byte[] info = InfoPage(options, memory, dataPages, metaPages);

        IEnumerable<byte[]> UncompressedStream()
        {
            // PFN list: ascending PFNs, bit 63 on zero pages, BM_END_OF_MAP after the last one, then zeros.
            byte[] meta = new byte[Page];
            int j = 0;
            long i = 0;
            foreach ((ulong pfn, long count) in ranges)
            {
                for (long k = 0; k < count; k++, i++)
                {
                    ulong value = pfn + (ulong)k;
                    if (options.FlagZeroPages && zero[(int)i])
                    {
                        value |= L.ZeroPageFlag;
                    }
                    BinaryPrimitives.WriteUInt64LittleEndian(meta.AsSpan(j * 8), value);
                    if (++j == L.PfnsPerPage)
                    {
                        yield return meta;
                        Array.Clear(meta);
                        j = 0;
                    }
                }
            }
            if (j > 0)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(meta.AsSpan(j * 8), L.EndOfMap);
                yield return meta;
            }
            i = 0;
            ulong written = 0;
            foreach ((ulong pfn, long count) in ranges)
            {
                for (long k = 0; k < count; k++, i++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (options.FlagZeroPages && zero[(int)i])
                    {
                        continue;
                    }
                    unreadable += reader.Read((pfn + (ulong)k) * Page, page);
                    written += Page;
                    progress?.Invoke(written);
                    yield return page;
                }
            }
        }

        if (options.Compression == SwsuspCompressionKind.None)
        {
            WriteArea(sink, options, L.FlagNoCompress, crc32: 0, info, streamAfterInfo, UncompressedStream());
            return (total, unreadable);
        }

        // Pass 2: compress 32-page chunks into a scratch file, then copy them behind the header and map pages.
        string scratch = Path.Combine(scratchDirectory, $".swsusp-chunks-{Guid.NewGuid():N}");
        using var chunks = new FileStream(scratch, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
        byte[] unc = new byte[L.ChunkBytes];
        byte[] cmp = new byte[L.ChunkHeader + Lzo1xCompressor.MaxOutputLength(unc.Length) + Page];
        uint crc = 0;
        long chunkPages = 0;
        int filled = 0;
        void FlushChunk()
        {
            if (filled == 0)
            {
                return;
            }
            ReadOnlySpan<byte> input = unc.AsSpan(0, filled * Page);
            crc = Crc32.Append(crc, input);   // the kernel's crc32_le: the same reflected table, no inversion
            int length = options.Compression == SwsuspCompressionKind.Lz4
                ? K4os.Compression.LZ4.LZ4Codec.Encode(input, cmp.AsSpan(L.ChunkHeader), K4os.Compression.LZ4.LZ4Level.L00_FAST)
                : Lzo1xCompressor.Compress(input, cmp.AsSpan(L.ChunkHeader));
            if (length <= 0)
            {
                throw new InvalidOperationException("LZ4 compression failed");
            }
            BinaryPrimitives.WriteUInt64LittleEndian(cmp, (ulong)length);
            int pages = (L.ChunkHeader + length + Page - 1) / Page;
            cmp.AsSpan(L.ChunkHeader + length, (pages * Page) - L.ChunkHeader - length).Clear();
            chunks.Write(cmp, 0, pages * Page);
            chunkPages += pages;
            filled = 0;
        }
        foreach (byte[] p in UncompressedStream())
        {
            p.CopyTo(unc, filled * Page);
            if (++filled == L.ChunkPages)
            {
                FlushChunk();
            }
        }
        FlushChunk();
        chunks.Position = 0;

        IEnumerable<byte[]> Stored()
        {
            byte[] buffer = new byte[Page];
            for (long i = 0; i < chunkPages; i++)
            {
                chunks.ReadExactly(buffer);
                yield return buffer;
            }
        }
        uint flags = L.FlagCrc32 | (options.Compression == SwsuspCompressionKind.Lz4 ? L.FlagLz4 : 0u);
        WriteArea(sink, options, flags, crc, info, chunkPages, Stored());
        return (total, unreadable);
    }

    /// <summary>Header page, then map pages interleaved with info and the stream, slot by slot.</summary>
    private static void WriteArea(SwsuspSink sink, SwsuspImageOptions options, uint flags, uint crc32, byte[] info, long streamAfterInfo, IEnumerable<byte[]> stream)
    {
        long streamPages = 1 + streamAfterInfo;
        // A map page gets its successor allocated as soon as it fills, so a stream that fills its last map page
        // exactly ends with an empty map page, as the kernel's does.
        long maps = (streamPages / L.MapEntries) + 1;
        long slots = 1 + maps + streamPages;
        ulong Slot(long s) => options.ResumeOffset + (ulong)s;
        long StreamSlot(long j) => 2 + j + (j / L.MapEntries);

        byte[] header = new byte[Page];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(L.SwapVersionOffset), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(L.SwapLastPageOffset), (uint)(slots - 1));
        "cloudmem-swsusp\0"u8.CopyTo(header.AsSpan(L.SwapUuidOffset));   // uuid (16 bytes, fixed)
        "hibernate"u8.CopyTo(header.AsSpan(L.SwapLabelOffset));           // volume label
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(L.Crc32Offset), crc32);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(L.ImageOffset), Slot(1));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(L.FlagsOffset), L.FlagPlatformMode | flags); // as on ACPI machines
        L.SwapSpace2.CopyTo(header.AsSpan(L.OrigSigOffset));
        L.KernelSignature.CopyTo(header.AsSpan(L.SigOffset));
        sink(header);

        byte[] map = new byte[Page];
        using IEnumerator<byte[]> pages = stream.GetEnumerator();
        for (long m = 0; m < maps; m++)
        {
            Array.Clear(map);
            long first = m * L.MapEntries;
            int entries = (int)Math.Clamp(streamPages - first, 0, L.MapEntries);
            for (int k = 0; k < entries; k++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(k * 8), Slot(StreamSlot(first + k)));
            }
            if (entries == L.MapEntries)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(L.MapNextOffset), Slot(1 + ((m + 1) * (L.MapEntries + 1))));
            }
            sink(map);
            for (int k = 0; k < entries; k++)
            {
                long j = first + k;
                if (j == 0)
                {
                    sink(info);
                    continue;
                }
                if (!pages.MoveNext())
                {
                    throw new InvalidOperationException("image stream ended early");
                }
                sink(pages.Current);
            }
        }
    }

    private static byte[] InfoPage(SwsuspImageOptions options, IPhysicalMemory memory, long dataPages, long metaPages)
    {
        byte[] info = new byte[Page];
        if (options.Uts is { } uts)
        {
            const int MaxText = L.UtsFieldLength - 1;   // each field ends with a NUL
            void Put(int offset, string value) => Encoding.ASCII.GetBytes(value.Length > MaxText ? value[..MaxText] : value).CopyTo(info, offset);
            Put(L.UtsSysname, "Linux");
            Put(L.UtsNodename, uts.Nodename);
            Put(L.UtsRelease, uts.Release);
            Put(L.UtsVersion, uts.Version);
            Put(L.UtsMachine, uts.Machine);
            BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(L.VersionCodeOffset), uts.VersionCode);
        }
        else
        {
            // struct restore_data_record (arch/x86/power/hibernate.c) written over the utsname.
            BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.X86Cr3Offset), options.Cr3);
            BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.X86MagicOffset), L.X86RestoreMagic);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.NumPhysPagesOffset), (memory.MaxAddress + Page - 1) / Page);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.ImagePagesOffset), (ulong)dataPages);
        ulong pages = (ulong)(dataPages + metaPages + 1);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.PagesOffset), pages);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(L.SizeOffset), pages * Page);
        return info;
    }
}

/// <summary>The <c>swsusp</c> writer: a swap file holding a Linux hibernation image of the capture.</summary>
public sealed class SwsuspWriter : ICaptureWriter
{
    /// <inheritdoc />
    public string Name => "swsusp";

    /// <inheritdoc />
    public string Description => "Linux hibernation image in a swap file (variants: lzo, none, lz4)";

    /// <inheritdoc />
    public IReadOnlyList<string> Variants => ["lzo", "none", "lz4"];

    /// <inheritdoc />
    public string? VerifyAs => SwsuspFormat.Id;

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        SwsuspCompressionKind compression = (context.Variant ?? "lzo").ToLowerInvariant() switch
        {
            "none" => SwsuspCompressionKind.None,
            "lz4" => SwsuspCompressionKind.Lz4,
            _ => SwsuspCompressionKind.Lzo,
        };
        ulong cr3 = 0;
        if (memory is ICaptureMetadata { Metadata: { } metadata })
        {
            foreach (CpuState cpu in metadata.Cpus)
            {
                if (cpu.TryGet("cr3", out cr3) && cr3 != 0)
                {
                    break;
                }
            }
        }
        OutputFile file = context.CreateMain();
        (long pages, ulong unreadable) = SwsuspImage.Write(memory, data => file.Write(data), new SwsuspImageOptions { Compression = compression, Cr3 = cr3 },
            context.Directory, context.ReportWritten, context.CancellationToken);
        return new WriterStatistics((int)Math.Min(int.MaxValue, pages), unreadable);
    }
}
