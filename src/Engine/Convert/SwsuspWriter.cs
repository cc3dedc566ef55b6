using System.Buffers.Binary;
using System.Collections;
using System.Text;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Engine.Convert;

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
    private const int Page = 4096;
    private const int MapEntries = 511;
    private const int ChunkPages = 32;

    /// <summary>Writes the image of <paramref name="memory"/> to <paramref name="sink"/>; <paramref name="scratchDirectory"/> holds a temporary file for compressed chunks.</summary>
    /// <returns>Saved pages and bytes of them that could not be read (written as zero).</returns>
    public static (long Pages, ulong Unreadable) Write(IPhysicalMemory memory, SwsuspSink sink, SwsuspImageOptions options, string scratchDirectory,
        Action<ulong>? progress = null, CancellationToken cancellationToken = default)
    {
        List<(ulong Pfn, long Count)> ranges = SavedRanges(memory.Runs);
        long total = ranges.Sum(r => r.Count);
        byte[] page = new byte[Page];
        ulong unreadable = 0;
        var reader = new PageReader(memory);

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
                    reader.Read(pfn + (ulong)k, page);
                    if (!page.AsSpan().ContainsAnyExcept((byte)0))
                    {
                        zero[(int)i] = true;
                        dataPages--;
                    }
                }
            }
        }
        long metaPages = (total + 511) / 512;
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
                        value |= 1UL << 63;
                    }
                    BinaryPrimitives.WriteUInt64LittleEndian(meta.AsSpan(j * 8), value);
                    if (++j == 512)
                    {
                        yield return meta;
                        Array.Clear(meta);
                        j = 0;
                    }
                }
            }
            if (j > 0)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(meta.AsSpan(j * 8), ulong.MaxValue);
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
                    unreadable += reader.Read(pfn + (ulong)k, page);
                    written += Page;
                    progress?.Invoke(written);
                    yield return page;
                }
            }
        }

        if (options.Compression == SwsuspCompressionKind.None)
        {
            WriteArea(sink, options, 2, crc32: 0, info, streamAfterInfo, UncompressedStream());
            return (total, unreadable);
        }

        // Pass 2: compress 32-page chunks into a scratch file, then copy them behind the header and map pages.
        string scratch = Path.Combine(scratchDirectory, $".swsusp-chunks-{Guid.NewGuid():N}");
        using var chunks = new FileStream(scratch, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20, FileOptions.DeleteOnClose);
        byte[] unc = new byte[ChunkPages * Page];
        byte[] cmp = new byte[8 + Lzo1xCompressor.MaxOutputLength(unc.Length) + Page];
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
                ? K4os.Compression.LZ4.LZ4Codec.Encode(input, cmp.AsSpan(8), K4os.Compression.LZ4.LZ4Level.L00_FAST)
                : Lzo1xCompressor.Compress(input, cmp.AsSpan(8));
            if (length <= 0)
            {
                throw new InvalidOperationException("LZ4 compression failed");
            }
            BinaryPrimitives.WriteUInt64LittleEndian(cmp, (ulong)length);
            int pages = (8 + length + Page - 1) / Page;
            cmp.AsSpan(8 + length, (pages * Page) - 8 - length).Clear();
            chunks.Write(cmp, 0, pages * Page);
            chunkPages += pages;
            filled = 0;
        }
        foreach (byte[] p in UncompressedStream())
        {
            p.CopyTo(unc, filled * Page);
            if (++filled == ChunkPages)
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
        uint flags = 4 | (options.Compression == SwsuspCompressionKind.Lz4 ? 16u : 0u);
        WriteArea(sink, options, flags, crc, info, chunkPages, Stored());
        return (total, unreadable);
    }

    /// <summary>Header page, then map pages interleaved with info and the stream, slot by slot.</summary>
    private static void WriteArea(SwsuspSink sink, SwsuspImageOptions options, uint flags, uint crc32, byte[] info, long streamAfterInfo, IEnumerable<byte[]> stream)
    {
        long streamPages = 1 + streamAfterInfo;
        // A map page gets its successor allocated as soon as it fills, so a stream that fills its last map page
        // exactly ends with an empty map page, as the kernel's does.
        long maps = (streamPages / MapEntries) + 1;
        long slots = 1 + maps + streamPages;
        ulong Slot(long s) => options.ResumeOffset + (ulong)s;
        long StreamSlot(long j) => 2 + j + (j / MapEntries);

        byte[] header = new byte[Page];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x400), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x404), (uint)(slots - 1));
        "cloudmem-swsusp\0"u8.CopyTo(header.AsSpan(0x40C));   // uuid (16 bytes, fixed)
        "hibernate"u8.CopyTo(header.AsSpan(0x41C));           // volume label
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0xFDC), crc32);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(0xFE0), Slot(1));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0xFE8), 1 | flags); // SF_PLATFORM_MODE as on ACPI machines
        "SWAPSPACE2"u8.CopyTo(header.AsSpan(0xFEC));
        "S1SUSPEND\0"u8.CopyTo(header.AsSpan(0xFF6));
        sink(header);

        byte[] map = new byte[Page];
        using IEnumerator<byte[]> pages = stream.GetEnumerator();
        for (long m = 0; m < maps; m++)
        {
            Array.Clear(map);
            long first = m * MapEntries;
            int entries = (int)Math.Clamp(streamPages - first, 0, MapEntries);
            for (int k = 0; k < entries; k++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(k * 8), Slot(StreamSlot(first + k)));
            }
            if (entries == MapEntries)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(map.AsSpan(MapEntries * 8), Slot(1 + ((m + 1) * (MapEntries + 1))));
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
            void Put(int offset, string value) => Encoding.ASCII.GetBytes(value.Length > 64 ? value[..64] : value).CopyTo(info, offset);
            Put(0, "Linux");
            Put(65, uts.Nodename);
            Put(130, uts.Release);
            Put(195, uts.Version);
            Put(260, uts.Machine);
            BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(0x188), uts.VersionCode);
        }
        else
        {
            // struct restore_data_record (arch/x86/power/hibernate.c) written over the utsname.
            BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x10), options.Cr3);
            BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x18), 0x23456789ABCDEF02UL);
        }
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x190), (memory.MaxAddress + Page - 1) / Page);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x1A0), (ulong)dataPages);
        ulong pages = (ulong)(dataPages + metaPages + 1);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x1A8), pages);
        BinaryPrimitives.WriteUInt64LittleEndian(info.AsSpan(0x1B0), pages * Page);
        return info;
    }

    /// <summary>Every page a run touches, as ascending (first PFN, count) ranges.</summary>
    private static List<(ulong Pfn, long Count)> SavedRanges(IReadOnlyList<PhysicalRun> runs)
    {
        var ranges = new List<(ulong Pfn, long Count)>();
        foreach (PhysicalRun run in runs)
        {
            ulong first = run.PhysicalAddress / Page;
            ulong end = (run.End + Page - 1) / Page;
            if (ranges.Count > 0 && ranges[^1].Pfn + (ulong)ranges[^1].Count >= first)
            {
                (ulong pfn, long count) = ranges[^1];
                ulong last = Math.Max(pfn + (ulong)count, end);
                ranges[^1] = (pfn, (long)(last - pfn));
            }
            else
            {
                ranges.Add((first, (long)(end - first)));
            }
        }
        return ranges;
    }

    /// <summary>Reads pages in ascending order; bytes outside every run, or unreadable, are zero.</summary>
    private sealed class PageReader(IPhysicalMemory memory)
    {
        private readonly IReadOnlyList<PhysicalRun> _runs = memory.Runs;
        private int _run;

        /// <summary>Reads page <paramref name="pfn"/>; returns the bytes inside runs that could not be read.</summary>
        public ulong Read(ulong pfn, byte[] page)
        {
            ulong pa = pfn * Page;
            ulong end = pa + Page;
            Array.Clear(page);
            if (_run > 0 && _runs[_run - 1].End > pa)
            {
                _run = 0; // pages go back (a second pass): restart
            }
            while (_run < _runs.Count && _runs[_run].End <= pa)
            {
                _run++;
            }
            ulong missing = 0;
            for (int r = _run; r < _runs.Count && _runs[r].PhysicalAddress < end; r++)
            {
                ulong from = Math.Max(pa, _runs[r].PhysicalAddress);
                ulong to = Math.Min(end, _runs[r].End);
                Span<byte> target = page.AsSpan((int)(from - pa), (int)(to - from));
                int read = memory.Read(from, target);
                missing += (ulong)(target.Length - read);
                target[read..].Clear();
            }
            return missing;
        }
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
    public string? VerifyAs => "swsusp";

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
