using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using CloudMem.VmStateParsers.IO;
using L = CloudMem.VmStateParsers.Formats.Swsusp.SwsuspLayout;

namespace CloudMem.VmStateParsers.Formats.Swsusp;

/// <summary>
/// Linux hibernation images (swsusp) in a swap file, a swap partition image, or a disk image whose swap partition
/// starts within its first MiB. Opening finds the swap header page and its hibernation signature, follows the
/// swap_map_page chain, reads swsusp_info and the PFN list, and maps every saved page: stored pages of uncompressed
/// images are direct runs (zero-copy), pages of compressed images (LZO1X, or LZ4 with SF_COMPRESSION_ALG_LZ4) are
/// decoded one chunk of up to 32 pages at a time, and pages the kernel flagged as all-zero are zero runs.
/// </summary>
internal sealed class SwsuspFormat : CaptureFormat
{
    private const string FormatName = "swsusp";

    /// <summary>Header pages are searched at 512-byte steps from offset 0 up to this offset (a partition in a disk image).</summary>
    public const int SearchLimit = 1024 * 1024;

    private const int SearchStep = 512;

    /// <summary>Swap-area pages tried as the first map page when the map's page numbers are not relative to the area (a swap file).</summary>
    private const int MaxBaseScanPages = 65536;

    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "swsusp";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
    {
        for (int offset = 0; offset <= SearchLimit && offset <= head.Length - L.PageSize; offset += SearchStep)
        {
            ReadOnlySpan<byte> page = head.Slice(offset, L.PageSize);
            ReadOnlySpan<byte> sig = page.Slice(L.SigOffset, L.SigLength);
            if (IsHibernation(sig) && (offset == 0 || IsSwap(page.Slice(L.OrigSigOffset, L.SigLength))))
            {
                return FormatProbeResult.Match;
            }
            if (offset == 0 && (IsSwap(sig) || IsUswsusp(sig)))
            {
                return FormatProbeResult.Match; // a swap area: parsing says whether it holds an image
            }
        }
        return FormatProbeResult.NoMatch;
    }

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        long area = FindHeader(file);
        var header = new FieldReader(file.Span(area, L.PageSize), area, FormatName, "swsusp_header");
        var metadata = new CaptureMetadata("Linux hibernation image (swsusp)");
        string signature = Encoding.ASCII.GetString(header.Bytes(L.SigOffset, L.SigLength, "sig")).TrimEnd('\0');
        string origSig = Encoding.ASCII.GetString(header.Bytes(L.OrigSigOffset, L.SigLength, "orig_sig")).TrimEnd('\0');
        uint flags = header.U32(L.FlagsOffset, "flags");
        ulong image = header.U64(L.ImageOffset, "image");
        long filePages = (file.Length - area) / L.PageSize;
        uint lastPage = header.U32(L.SwapLastPageOffset, "last_page");
        long areaPages = filePages;
        if (lastPage > 0 && (long)lastPage + 1 < filePages)
        {
            areaPages = (long)lastPage + 1;
        }
        else if ((long)lastPage + 1 > filePages)
        {
            metadata.Warnings.Add($"the swap header declares {(long)lastPage + 1} pages but the file holds {filePages} from offset 0x{area:X} (truncated copy?)");
        }
        SwsuspCompression compression = (flags & L.FlagNoCompress) != 0 ? SwsuspCompression.None
            : (flags & L.FlagLz4) != 0 ? SwsuspCompression.Lz4 : SwsuspCompression.Lzo;
        if (image == 0)
        {
            throw header.Fail("image", L.ImageOffset, "is 0: the hibernation signature is set but no image map was recorded");
        }

        ulong baseSector = FindBase(file, area, areaPages, image, out bool inferred);
        long declaredPages = Math.Max(areaPages, (long)lastPage + 1);
        var map = WalkMap(file, area, areaPages, declaredPages, baseSector, image, limits);
        if (map.Pages == 0)
        {
            throw header.Fail("image", L.ImageOffset, "the first swap map page lists no pages");
        }

        long infoAt = map.FileOffset(0);
        var info = new FieldReader(file.Span(infoAt, L.PageSize), infoAt, FormatName, "swsusp_info");
        ulong pages = info.U64(L.PagesOffset, "pages");
        ulong imagePages = info.U64(L.ImagePagesOffset, "image_pages");
        ulong size = info.U64(L.SizeOffset, "size");
        if (pages > (ulong)limits.MaxSwsuspPages)
        {
            throw info.Fail("pages", L.PagesOffset, $"{pages} pages is more than {limits.MaxSwsuspPages} (ParserLimits.MaxSwsuspPages)");
        }
        if (pages < 2 || imagePages > pages - 2)
        {
            throw info.Fail("pages", L.PagesOffset, $"{pages} pages cannot hold the header, a PFN list and {imagePages} image pages");
        }
        if (size != pages * L.PageSize)
        {
            metadata.Warnings.Add($"swsusp_info.size 0x{size:X} is not pages x 4096 (0x{pages * L.PageSize:X})");
        }
        long metaPages = (long)(pages - imagePages - 1);

        metadata.Add("signature", signature);
        metadata.Add("swapAreaOffset", $"0x{area:X}");
        metadata.Add("swapSignature", origSig);
        metadata.Add("swapAreaPages", areaPages.ToString(CultureInfo.InvariantCulture));
        metadata.Add("flags", DescribeFlags(flags));
        metadata.Add("compression", compression switch { SwsuspCompression.None => "none", SwsuspCompression.Lz4 => "lz4", _ => "lzo" });
        if ((flags & L.FlagCrc32) != 0)
        {
            metadata.Add("crc32", $"0x{header.U32(L.Crc32Offset, "crc32"):X8}");
        }
        if ((flags & L.FlagHwSig) != 0)
        {
            metadata.Add("hardwareSignature", $"0x{header.U32(L.HwSigOffset, "hw_sig"):X8}");
        }
        metadata.Add("imageMapPage", $"0x{image:X}");
        if (inferred)
        {
            metadata.Add("resumeOffset", baseSector.ToString(CultureInfo.InvariantCulture));
            metadata.Warnings.Add($"map entries are device page numbers: this swap file starts at device page {baseSector} (resume_offset), inferred from the map");
        }
        metadata.Add("mapPages", map.MapPages.ToString(CultureInfo.InvariantCulture));
        DescribeInfo(info, metadata);
        metadata.Add("pages", pages.ToString(CultureInfo.InvariantCulture));
        metadata.Add("imagePages", imagePages.ToString(CultureInfo.InvariantCulture));
        metadata.Add("metaPages", metaPages.ToString(CultureInfo.InvariantCulture));

        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        IPageDecoder? decoder = null;
        int chunkCount = 0;
        PfnWalk walk = compression == SwsuspCompression.None
            ? MapUncompressed(file, map, metaPages, builder, limits)
            : MapCompressed(file, map, metaPages, (long)pages, compression, builder, limits, out decoder, out chunkCount);
        if (walk.DataPages != (long)imagePages)
        {
            throw info.Fail("image_pages", L.ImagePagesOffset, $"says {imagePages} stored pages but the PFN list names {walk.DataPages}");
        }
        metadata.Add("zeroPages", walk.ZeroPages.ToString(CultureInfo.InvariantCulture));
        if (walk.UnmappedPages > 0)
        {
            metadata.Warnings.Add($"the swap map ends before {walk.UnmappedPages} of the {imagePages} stored pages (truncated image): they read as holes");
        }
        if (compression != SwsuspCompression.None)
        {
            metadata.Add("chunks", chunkCount.ToString(CultureInfo.InvariantCulture));
            return new ParsedCapture(file, builder.ToArray(), decoder, metadata);
        }
        if (builder.TruncatedBytes > 0)
        {
            metadata.Warnings.Add($"file is truncated: 0x{builder.TruncatedBytes:X} bytes of saved pages are missing");
        }
        return new ParsedCapture(file, builder.ToArray(), null, metadata);
    }

    private readonly record struct PfnWalk(long DataPages, long ZeroPages, long UnmappedPages);

    /// <summary>The map chain, and where each stream page is.</summary>
    private sealed record ImageMap(SwsuspStreamMap Stream, int MapPages)
    {
        public long Pages => Stream.Pages;
        public long FileOffset(long page) => Stream.FileOffset(page);
    }

    private static long FindHeader(IByteSource file)
    {
        long firstSwap = -1;
        for (long offset = 0; offset <= SearchLimit && offset <= file.Length - L.PageSize; offset += SearchStep)
        {
            ReadOnlySpan<byte> page = file.Span(offset, L.PageSize);
            ReadOnlySpan<byte> sig = page.Slice(L.SigOffset, L.SigLength);
            if (IsHibernation(sig) && (offset == 0 || IsSwap(page.Slice(L.OrigSigOffset, L.SigLength))))
            {
                return offset;
            }
            if (IsUswsusp(sig) && (offset == 0 || IsSwap(page.Slice(L.OrigSigOffset, L.SigLength))))
            {
                throw Fail.At(FormatName, "swsusp_header.sig", offset + L.SigOffset,
                    $"\"{Encoding.ASCII.GetString(sig[..9])}\" marks a userspace suspend (uswsusp/s2disk) image, whose layout is not supported");
            }
            if (firstSwap < 0 && IsSwap(sig))
            {
                firstSwap = offset;
            }
        }
        if (firstSwap >= 0)
        {
            throw Fail.At(FormatName, "swap_header.magic", firstSwap + L.SigOffset,
                $"swap area holds no hibernation image (signature \"{Encoding.ASCII.GetString(file.Span(firstSwap + L.SigOffset, L.SigLength))}\", not S1SUSPEND)");
        }
        throw Fail.At(FormatName, "swap_header.magic", Math.Min(L.SigOffset, Math.Max(0, file.Length - 1)),
            file.Length < L.PageSize ? $"file of {file.Length} bytes is smaller than a swap header page" : "no swap header with a hibernation signature in the first MiB");
    }

    /// <summary>
    /// The device page number of the swap area's first page. 0 for a swap partition; for a swap file, the map holds
    /// device page numbers and the base is the file's resume_offset: then the first map page is searched for (the page
    /// whose first entry leads to a valid swsusp_info).
    /// </summary>
    private static ulong FindBase(IByteSource file, long area, long areaPages, ulong image, out bool inferred)
    {
        inferred = false;
        if (image < (ulong)areaPages && LooksLikeFirstMapPage(file, area, areaPages, 0, (long)image))
        {
            return 0;
        }
        long limit = Math.Min(areaPages - 1, MaxBaseScanPages);
        for (long page = 1; page <= limit && (ulong)page <= image; page++)
        {
            ulong candidate = image - (ulong)page;
            if (LooksLikeFirstMapPage(file, area, areaPages, candidate, page))
            {
                inferred = candidate != 0;
                return candidate;
            }
        }
        return 0; // let the strict walk report what is wrong
    }

    private static bool LooksLikeFirstMapPage(IByteSource file, long area, long areaPages, ulong baseSector, long mapPage)
    {
        ReadOnlySpan<byte> map = file.Span(area + (mapPage * L.PageSize), L.PageSize);
        if (map.IsEmpty)
        {
            return false;
        }
        ulong first = BinaryPrimitives.ReadUInt64LittleEndian(map);
        if (first <= baseSector || first - baseSector >= (ulong)areaPages)
        {
            return false;
        }
        ReadOnlySpan<byte> info = file.Span(area + ((long)(first - baseSector) * L.PageSize), L.PageSize);
        if (info.IsEmpty)
        {
            return false;
        }
        ulong pages = BinaryPrimitives.ReadUInt64LittleEndian(info[L.PagesOffset..]);
        ulong imagePages = BinaryPrimitives.ReadUInt64LittleEndian(info[L.ImagePagesOffset..]);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(info[L.SizeOffset..]);
        return pages >= 2 && imagePages <= pages - 2 && pages < (1UL << 40) && size == pages * L.PageSize;
    }

    private static ImageMap WalkMap(IByteSource file, long area, long areaPages, long declaredPages, ulong baseSector, ulong image, ParserLimits limits)
    {
        var stream = new SwsuspStreamMap();
        var seen = new HashSet<ulong>();
        ulong sector = image;
        long describedAt = area + L.ImageOffset;
        string structure = "swsusp_header.image";
        int mapPages = 0;
        while (sector != 0)
        {
            if (sector <= baseSector || sector - baseSector >= (ulong)areaPages)
            {
                throw Fail.At(FormatName, structure, describedAt, $"map page 0x{sector:X} {Outside(sector, baseSector, areaPages, declaredPages)}");
            }
            if (!seen.Add(sector))
            {
                throw Fail.At(FormatName, structure, describedAt, $"the map chain loops back to map page 0x{sector:X}");
            }
            if (mapPages >= limits.MaxSwsuspMapPages)
            {
                throw Fail.At(FormatName, structure, describedAt, $"more than {limits.MaxSwsuspMapPages} swap map pages (ParserLimits.MaxSwsuspMapPages)");
            }
            long at = area + ((long)(sector - baseSector) * L.PageSize);
            ReadOnlySpan<byte> page = file.Span(at, L.PageSize);
            if (page.IsEmpty)
            {
                throw Fail.At(FormatName, structure, describedAt, $"map page 0x{sector:X} at 0x{at:X} is past the end of the file");
            }
            mapPages++;
            for (int k = 0; k < L.MapEntries; k++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(page[(k * 8)..]);
                if (entry == 0)
                {
                    return new ImageMap(stream, mapPages); // the kernel's reader stops at the first empty entry
                }
                if (entry <= baseSector || entry - baseSector >= (ulong)areaPages)
                {
                    throw Fail.At(FormatName, $"swap_map_page[{mapPages - 1}].entries[{k}]", at + (k * 8), $"page 0x{entry:X} {Outside(entry, baseSector, areaPages, declaredPages)}");
                }
                if (stream.Pages >= areaPages)
                {
                    // The kernel uses every swap page once: more entries than the area has pages is a corrupt map
                    // (and would let a small file describe an unbounded stream).
                    throw Fail.At(FormatName, $"swap_map_page[{mapPages - 1}].entries[{k}]", at + (k * 8), $"the map lists more pages than the swap area holds ({areaPages})");
                }
                if (stream.Pages >= limits.MaxSwsuspPages)
                {
                    throw Fail.At(FormatName, $"swap_map_page[{mapPages - 1}].entries[{k}]", at + (k * 8), $"more than {limits.MaxSwsuspPages} pages (ParserLimits.MaxSwsuspPages)");
                }
                stream.Add(area + ((long)(entry - baseSector) * L.PageSize));
            }
            describedAt = at + L.MapNextOffset;
            structure = $"swap_map_page[{mapPages - 1}].next_swap";
            sector = BinaryPrimitives.ReadUInt64LittleEndian(page[L.MapNextOffset..]);
        }
        return new ImageMap(stream, mapPages);
    }

    private static string Outside(ulong sector, ulong baseSector, long areaPages, long declaredPages)
        => sector > baseSector && sector - baseSector < (ulong)declaredPages
            ? $"lies past the end of the file (the swap area declares {declaredPages} pages, the file holds {areaPages}: truncated copy?)"
            : $"is outside the swap area (device pages 0x{baseSector:X}..0x{baseSector + (ulong)areaPages - 1:X})";

    private static PfnWalk MapUncompressed(IByteSource file, ImageMap map, long metaPages, RunMapBuilder builder, ParserLimits limits)
    {
        if (map.Pages < 1 + metaPages)
        {
            throw Fail.At(FormatName, "swap_map_page", map.FileOffset(0), $"the map lists {map.Pages} pages, fewer than the header and {metaPages} PFN list pages");
        }
        long data = 0;
        long zeros = 0;
        long unmapped = 0;
        for (long m = 0; m < metaPages; m++)
        {
            long at = map.FileOffset(1 + m);
            ReadOnlySpan<byte> page = file.Span(at, L.PageSize);
            if (page.IsEmpty)
            {
                throw Fail.At(FormatName, $"pfn_list[{m}]", at, "is past the end of the file");
            }
            WalkPfnPage(page, m, at, ref data, ref zeros, builder, limits, (ordinal, pfn) =>
            {
                long stream = 1 + metaPages + ordinal;
                if (stream >= map.Pages)
                {
                    unmapped++;
                    return;
                }
                builder.Add(new PhysicalRun(pfn * L.PageSize, L.PageSize, map.FileOffset(stream)), "pfn_list", at);
            });
        }
        return new PfnWalk(data, zeros, unmapped);
    }

    private static PfnWalk MapCompressed(IByteSource file, ImageMap map, long metaPages, long pages, SwsuspCompression compression,
        RunMapBuilder builder, ParserLimits limits, out IPageDecoder decoder, out int chunkCount)
    {
        // Index the chunks: each starts on a fresh stream page with its compressed length.
        var chunks = new SwsuspChunkIndex();
        long streamPage = 1;
        long remaining = pages - 1;
        while (remaining > 0)
        {
            if (streamPage >= map.Pages)
            {
                throw Fail.At(FormatName, $"chunk[{chunks.Count}]", map.FileOffset(map.Pages - 1),
                    $"the map ends after {map.Pages} pages but {remaining} image pages are not stored yet (truncated image)");
            }
            long at = map.FileOffset(streamPage);
            ReadOnlySpan<byte> head = file.Span(at, L.ChunkHeader);
            if (head.IsEmpty)
            {
                throw Fail.At(FormatName, $"chunk[{chunks.Count}]", at, "is past the end of the file");
            }
            ulong length = SwsuspChunkDecoder.ReadChunkLength(head);
            if (length == 0 || length > (ulong)L.MaxCompressed)
            {
                throw Fail.At(FormatName, $"chunk[{chunks.Count}].length", at, $"compressed length {length} is not in 1..{L.MaxCompressed}");
            }
            long spans = ((long)length + L.ChunkHeader + L.PageSize - 1) / L.PageSize;
            if (streamPage + spans > map.Pages)
            {
                throw Fail.At(FormatName, $"chunk[{chunks.Count}].length", at, $"{length} bytes need {spans} pages but the map lists only {map.Pages - streamPage} more");
            }
            if (chunks.Count >= limits.MaxSwsuspChunks)
            {
                throw Fail.At(FormatName, $"chunk[{chunks.Count}]", at, $"more than {limits.MaxSwsuspChunks} chunks (ParserLimits.MaxSwsuspChunks)");
            }
            int unc = (int)Math.Min(L.ChunkPages, remaining);
            chunks.Add(streamPage, (int)length, unc);
            streamPage += spans;
            remaining -= unc;
        }
        chunkCount = chunks.Count;

        // Uncompressed stream page u (1 = first PFN list page) is page (u-1) % 32 of chunk (u-1) / 32.
        var segmentChunk = new List<int>();
        var segmentPage = new List<byte>();
        byte[] buffer = new byte[L.ChunkBytes];
        int decoded = -1;
        long data = 0;
        long zeros = 0;
        ulong segStart = 0;
        ulong segNext = 0;
        long segUnc = -1;
        int segPages = 0;
        long segAt = -1;
        void Flush()
        {
            if (segPages == 0)
            {
                return;
            }
            builder.Add(new PhysicalRun(segStart * L.PageSize, (ulong)segPages * L.PageSize, segmentChunk.Count, RunStorage.Decoded), "pfn_list", segAt);
            segmentChunk.Add((int)((segUnc - 1) / L.ChunkPages));
            segmentPage.Add((byte)((segUnc - 1) % L.ChunkPages));
            segPages = 0;
        }
        for (long m = 0; m < metaPages; m++)
        {
            long unc = 1 + m;
            int chunk = (int)((unc - 1) / L.ChunkPages);
            if (chunk != decoded)
            {
                if (!SwsuspChunkDecoder.TryDecodeChunk(file, map.Stream, chunks, chunk, compression, buffer, out string? problem))
                {
                    throw Fail.At(FormatName, $"pfn_list[{m}]", map.FileOffset(chunks.StreamPage(chunk)), $"the chunk holding the PFN list does not decode: {problem}");
                }
                decoded = chunk;
            }
            long at = map.FileOffset(chunks.StreamPage(chunk));
            ReadOnlySpan<byte> page = buffer.AsSpan((int)((unc - 1) % L.ChunkPages) * L.PageSize, L.PageSize);
            segAt = at;
            WalkPfnPage(page, m, at, ref data, ref zeros, builder, limits, (ordinal, pfn) =>
            {
                long u = 1 + metaPages + ordinal;
                if (segPages > 0 && pfn == segNext && u == segUnc + segPages && (u - 1) / L.ChunkPages == (segUnc - 1) / L.ChunkPages)
                {
                    segPages++;
                    segNext++;
                    return;
                }
                Flush();
                segStart = pfn;
                segNext = pfn + 1;
                segUnc = u;
                segPages = 1;
            }, Flush);
        }
        Flush();
        decoder = new SwsuspChunkDecoder(file, map.Stream, chunks, compression, [.. segmentChunk], [.. segmentPage]);
        return new PfnWalk(data, zeros, 0);
    }

    /// <summary>Walks one PFN list page: zero-flagged PFNs become zero runs, the others are handed to <paramref name="stored"/> in order.</summary>
    private static void WalkPfnPage(ReadOnlySpan<byte> page, long m, long at, ref long data, ref long zeros, RunMapBuilder builder, ParserLimits limits,
        Action<long, ulong> stored, Action? beforeZero = null)
    {
        ulong maxPfn = limits.MaxPhysicalAddress / L.PageSize;
        for (int j = 0; j < L.PfnsPerPage; j++)
        {
            ulong raw = BinaryPrimitives.ReadUInt64LittleEndian(page[(j * 8)..]);
            if (raw == L.EndOfMap)
            {
                return;
            }
            bool zero = (raw & L.ZeroPageFlag) != 0;
            ulong pfn = raw & ~L.ZeroPageFlag;
            if (pfn >= maxPfn)
            {
                throw Fail.At(FormatName, $"pfn_list[{m}][{j}]", at, $"PFN 0x{pfn:X} is past the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
            }
            if (zero)
            {
                beforeZero?.Invoke();
                builder.Add(new PhysicalRun(pfn * L.PageSize, L.PageSize, 0, RunStorage.Zero), $"pfn_list[{m}][{j}]", at);
                zeros++;
                continue;
            }
            stored(data, pfn);
            data++;
        }
    }

    private static void DescribeInfo(FieldReader info, CaptureMetadata metadata)
    {
        ulong magic = info.U64(L.X86MagicOffset, "arch.magic");
        string sysname = info.FixedString(L.UtsSysname, L.UtsFieldLength, "uts.sysname");
        if (magic == L.X86RestoreMagic)
        {
            ulong cr3 = info.U64(L.X86Cr3Offset, "arch.cr3");
            metadata.Add("archHeader", "x86-64 restore_data_record (no utsname in x86-64 images)");
            metadata.Add("cr3", $"0x{cr3:X}");
            metadata.Add("restoreJumpAddress", $"0x{info.U64(L.X86JumpAddressOffset, "arch.jump_address"):X}");
            metadata.Add("restoreJumpAddressPhys", $"0x{info.U64(L.X86JumpAddressPhysOffset, "arch.jump_address_phys"):X}");
            metadata.Add("e820Checksum", $"0x{info.U64(L.X86E820ChecksumOffset, "arch.e820_checksum"):X8}");
            if (cr3 != 0)
            {
                metadata.Cpus.Add(new CpuState(0, "swsusp x86-64 restore record (CR3 at hibernation)", [new("cr3", cr3)]));
            }
        }
        else if (sysname == "Linux")
        {
            metadata.Add("kernelRelease", info.FixedString(L.UtsRelease, L.UtsFieldLength, "uts.release"));
            metadata.Add("kernelVersion", info.FixedString(L.UtsVersion, L.UtsFieldLength, "uts.version"));
            metadata.Add("machine", info.FixedString(L.UtsMachine, L.UtsFieldLength, "uts.machine"));
            metadata.Add("nodename", info.FixedString(L.UtsNodename, L.UtsFieldLength, "uts.nodename"));
            uint code = info.U32(L.VersionCodeOffset, "version_code");
            metadata.Add("versionCode", $"{code >> 16}.{(code >> 8) & 0xFF}.{code & 0xFF}");
        }
        else
        {
            metadata.Add("archHeader", "architecture-specific (not decoded)");
        }
        metadata.Add("numPhysPages", info.U64(L.NumPhysPagesOffset, "num_physpages").ToString(CultureInfo.InvariantCulture));
        int cpus = info.I32(L.CpusOffset, "cpus");
        if (cpus != 0)
        {
            metadata.Add("cpus", cpus.ToString(CultureInfo.InvariantCulture));
        }
    }

    private static string DescribeFlags(uint flags)
    {
        var names = new List<string>();
        if ((flags & L.FlagPlatformMode) != 0) names.Add("platform");
        if ((flags & L.FlagNoCompress) != 0) names.Add("nocompress");
        if ((flags & L.FlagCrc32) != 0) names.Add("crc32");
        if ((flags & L.FlagHwSig) != 0) names.Add("hw_sig");
        if ((flags & L.FlagLz4) != 0) names.Add("lz4");
        uint unknown = flags & ~(L.FlagPlatformMode | L.FlagNoCompress | L.FlagCrc32 | L.FlagHwSig | L.FlagLz4);
        if (unknown != 0) names.Add($"0x{unknown:X}");
        return $"0x{flags:X} ({(names.Count == 0 ? "none" : string.Join(", ", names))})";
    }

    private static bool IsHibernation(ReadOnlySpan<byte> sig) => sig.SequenceEqual(L.KernelSignature) || sig.SequenceEqual(L.OldKernelSignature);

    private static bool IsSwap(ReadOnlySpan<byte> sig) => sig.SequenceEqual(L.SwapSpace2) || sig.SequenceEqual(L.SwapSpace1);

    private static bool IsUswsusp(ReadOnlySpan<byte> sig) => sig[..9].SequenceEqual(L.UswsuspS2) || sig[..9].SequenceEqual(L.UswsuspUl);
}
