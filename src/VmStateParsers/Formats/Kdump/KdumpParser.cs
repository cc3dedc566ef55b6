using System.Buffers.Binary;
using System.Buffers;
using System.Globalization;
using System.Numerics;
using System.Text;
using CloudMem.VmStateParsers.Formats.Elf;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>Builds the run table of a compressed kdump from its headers and bitmap 2 (the "stored pages" bitmap).</summary>
internal static class KdumpParser
{
    public static ParsedCapture Parse(IByteSource source, ParserLimits limits, string formatName, CaptureMetadata metadata)
    {
        long fileLength = source.Length;
        byte[] headerBytes = new byte[KdumpLayout.H64.Size];
        int got = source.Read(0, headerBytes);
        ReadOnlySpan<byte> head = headerBytes.AsSpan(0, got);
        var probe = new FieldReader(head, 0, formatName, "disk_dump_header");
        string signature = probe.FixedString(KdumpLayout.SignatureOffset, 8, "signature");
        string machine = probe.FixedString(KdumpLayout.UtsMachine, KdumpLayout.UtsLength, "utsname.machine");

        // Byte order: header_version is a small number (0..6 today) in the dumped machine's order.
        uint versionLe = probe.U32(KdumpLayout.HeaderVersion, "header_version");
        bool bigEndian = versionLe > 0xFFFF && System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(versionLe) <= 0xFFFF;
        var header = new FieldReader(head, 0, formatName, "disk_dump_header", bigEndian);
        int version = header.I32(KdumpLayout.HeaderVersion, "header_version");
        if (version < 0 || version > 64)
        {
            throw header.Fail("header_version", KdumpLayout.HeaderVersion, $"version {version} is not a kdump header version");
        }

        bool is64 = KdumpLayout.Is64BitMachine(machine) || (!KdumpLayout.IsPackedI386(machine) && !machine.StartsWith("arm", StringComparison.Ordinal)
            && IsBlockSize(header, KdumpLayout.H64.BlockSize));
        int oStatus = is64 ? KdumpLayout.H64.Status : KdumpLayout.H32.Status;
        int oBlock = is64 ? KdumpLayout.H64.BlockSize : KdumpLayout.H32.BlockSize;
        int oSub = is64 ? KdumpLayout.H64.SubHdrSize : KdumpLayout.H32.SubHdrSize;
        int oBitmap = is64 ? KdumpLayout.H64.BitmapBlocks : KdumpLayout.H32.BitmapBlocks;
        int oMapnr = is64 ? KdumpLayout.H64.MaxMapnr : KdumpLayout.H32.MaxMapnr;
        int oCpus = is64 ? KdumpLayout.H64.NrCpus : KdumpLayout.H32.NrCpus;
        int oTime = is64 ? KdumpLayout.H64.TimestampSec : KdumpLayout.H32.TimestampSec;

        uint status = header.U32(oStatus, "status");
        int blockSize = header.I32(oBlock, "block_size");
        if (blockSize < 512 || blockSize > 1 << 20 || !BitOperations.IsPow2(blockSize))
        {
            throw header.Fail("block_size", oBlock, $"{blockSize} is not a page size (a power of two from 512 to 1 MiB)");
        }
        int subHdrBlocks = header.I32(oSub, "sub_hdr_size");
        uint bitmapBlocks = header.U32(oBitmap, "bitmap_blocks");
        ulong maxMapnr = header.U32(oMapnr, "max_mapnr");
        int nrCpus = header.I32(oCpus, "nr_cpus");
        long timestamp = is64 ? header.I64(oTime, "timestamp") : header.I32(oTime, "timestamp");
        if (subHdrBlocks < 0 || (long)subHdrBlocks * blockSize > fileLength)
        {
            throw header.Fail("sub_hdr_size", oSub, $"{subHdrBlocks} blocks of {blockSize} bytes is outside the file (0x{fileLength:X} bytes)");
        }

        // Sub-header: the layout follows the dumped machine's word size and alignment rules.
        KdumpLayout.SubHeader layout = is64 ? KdumpLayout.Sub64 : KdumpLayout.IsPackedI386(machine) ? KdumpLayout.Sub32Packed : KdumpLayout.Sub32Aligned;
        byte[] subBytes = new byte[layout.Size];
        int subGot = source.Read(blockSize, subBytes);
        var sub = new FieldReader(subBytes.AsSpan(0, subGot), blockSize, formatName, "kdump_sub_header", bigEndian);
        long physBase = version >= 0 && subHdrBlocks > 0
            ? (layout.PhysBaseIs64 ? sub.I64(layout.PhysBase, "phys_base") : sub.I32(layout.PhysBase, "phys_base"))
            : 0;
        int dumpLevel = version >= 1 && subHdrBlocks > 0 ? sub.I32(layout.DumpLevel, "dump_level") : 0;
        int split = version >= 2 && subHdrBlocks > 0 ? sub.I32(layout.Split, "split") : 0;
        if (version >= 6 && subHdrBlocks > 0)
        {
            maxMapnr = sub.U64(layout.MaxMapnr64, "max_mapnr_64");
        }
        metadata.Add("signature", signature.TrimEnd());
        metadata.Add("headerVersion", version.ToString(CultureInfo.InvariantCulture));
        metadata.Add("machine", machine);
        metadata.Add("byteOrder", bigEndian ? "big-endian" : "little-endian");
        metadata.Add("sysname", header.FixedString(KdumpLayout.Utsname, KdumpLayout.UtsLength, "utsname.sysname"));
        metadata.Add("nodename", header.FixedString(KdumpLayout.Utsname + KdumpLayout.UtsLength, KdumpLayout.UtsLength, "utsname.nodename"));
        metadata.Add("release", header.FixedString(KdumpLayout.Utsname + 2 * KdumpLayout.UtsLength, KdumpLayout.UtsLength, "utsname.release"));
        metadata.Add("version", header.FixedString(KdumpLayout.Utsname + 3 * KdumpLayout.UtsLength, KdumpLayout.UtsLength, "utsname.version"));
        metadata.Add("timestamp", timestamp > 0 && timestamp < 253402300800 ? DateTimeOffset.FromUnixTimeSeconds(timestamp).ToString("u", CultureInfo.InvariantCulture) : timestamp.ToString(CultureInfo.InvariantCulture));
        metadata.Add("compression", KdumpLayout.CompressionName(status));
        metadata.Add("status", $"0x{status:X}");
        metadata.Add("blockSize", blockSize.ToString(CultureInfo.InvariantCulture));
        metadata.Add("maxMapnr", maxMapnr.ToString(CultureInfo.InvariantCulture));
        metadata.Add("nrCpus", nrCpus.ToString(CultureInfo.InvariantCulture));
        ulong magnitude = physBase < 0 ? (ulong)(-(physBase + 1)) + 1 : (ulong)physBase; // |long.MinValue| fits a ulong
        metadata.Add("physBase", (physBase < 0 ? "-0x" : "0x") + magnitude.ToString("X", System.Globalization.CultureInfo.InvariantCulture));
        metadata.Add("dumpLevel", dumpLevel.ToString(CultureInfo.InvariantCulture));
        if (split != 0)
        {
            metadata.Add("split", "yes (one part of a split dump; pages of other parts are holes)");
        }
        if ((status & KdumpLayout.StatusIncomplete) != 0)
        {
            metadata.Warnings.Add("the dump is marked incomplete (status 0x8): writing stopped early, missing pages read as holes");
        }

        // Notes (CPU registers, VMCOREINFO).
        if (version >= 4 && subHdrBlocks > 0)
        {
            ulong noteOffset = sub.U64(layout.OffsetNote, "offset_note");
            ulong noteSize = layout.SizesAre64 ? sub.U64(layout.SizeNote, "size_note") : sub.U32(layout.SizeNote, "size_note");
            if (noteSize > 0)
            {
                if (noteSize > (ulong)limits.MaxNoteBytes)
                {
                    throw sub.Fail("size_note", layout.SizeNote, $"{noteSize} bytes of notes is more than ParserLimits.MaxNoteBytes");
                }
                if (noteOffset > (ulong)fileLength || noteSize > (ulong)fileLength - noteOffset)
                {
                    throw sub.Fail("offset_note", layout.OffsetNote, $"notes at 0x{noteOffset:X}+0x{noteSize:X} lie outside the file (0x{fileLength:X} bytes)");
                }
                byte[] notes = new byte[noteSize];
                if (source.Read((long)noteOffset, notes) != notes.Length)
                {
                    throw sub.Fail("offset_note", layout.OffsetNote, $"notes at 0x{noteOffset:X}+0x{noteSize:X} could not be read");
                }
                ElfNotes.Parse(notes, (long)noteOffset, machine, bigEndian, metadata, limits, formatName);
            }
        }
        if (metadata.VmcoreInfo is null && version >= 3 && subHdrBlocks > 0)
        {
            ulong infoOffset = sub.U64(layout.OffsetVmcoreinfo, "offset_vmcoreinfo");
            ulong infoSize = layout.SizesAre64 ? sub.U64(layout.SizeVmcoreinfo, "size_vmcoreinfo") : sub.U32(layout.SizeVmcoreinfo, "size_vmcoreinfo");
            if (infoSize > 0 && infoSize <= (ulong)limits.MaxVmcoreInfoBytes && infoOffset <= (ulong)fileLength && infoSize <= (ulong)fileLength - infoOffset)
            {
                byte[] text = new byte[infoSize];
                if (source.Read((long)infoOffset, text) == text.Length)
                {
                    metadata.VmcoreInfo = VmcoreInfo.Parse(text);
                }
            }
        }

        // Bitmaps: bitmap 2 (second half) says which PFNs have a page_desc.
        long bitmap1 = (1L + subHdrBlocks) * blockSize;
        long bitmapsLength = (long)bitmapBlocks * blockSize;
        if (bitmapBlocks == 0 || bitmap1 > fileLength || bitmapsLength > fileLength - bitmap1)
        {
            throw header.Fail("bitmap_blocks", oBitmap, $"{bitmapBlocks} bitmap blocks at 0x{bitmap1:X} lie outside the file (0x{fileLength:X} bytes)");
        }
        long bitmap2 = bitmap1 + bitmapsLength / 2;
        ulong bitmapBits = (ulong)(bitmapsLength / 2) * 8;
        if (maxMapnr > bitmapBits)
        {
            throw header.Fail("max_mapnr", oMapnr, $"{maxMapnr} pages need more bits than the bitmap holds ({bitmapBits})");
        }
        if (maxMapnr > limits.MaxPhysicalAddress / (ulong)blockSize)
        {
            throw header.Fail("max_mapnr", oMapnr, $"{maxMapnr} pages of {blockSize} bytes is beyond the physical-address limit");
        }
        long descBase = (1L + subHdrBlocks + bitmapBlocks) * blockSize;
        long descAvailable = Math.Max(0, (fileLength - descBase) / KdumpLayout.PageDescSize);

        var builder = new RunMapBuilder(formatName, fileLength, limits);
        long descIndex = 0;
        long clippedPages = 0;
        const int chunkBytes = 1 << 20;
        byte[] chunk = ArrayPool<byte>.Shared.Rent(chunkBytes);
        try
        {
            ulong runStart = 0;
            long runDesc = 0;
            ulong runPages = 0;
            ulong totalBytes = (maxMapnr + 7) / 8;
            for (ulong byteIndex = 0; byteIndex < totalBytes; byteIndex += chunkBytes)
            {
                int count = (int)Math.Min(chunkBytes, totalBytes - byteIndex);
                Span<byte> bits = chunk.AsSpan(0, count);
                int read = source.Read(bitmap2 + (long)byteIndex, bits);
                bits[read..].Clear();
                for (int i = 0; i < count; i++)
                {
                    byte b = bits[i];
                    ulong firstPfn = (byteIndex + (ulong)i) * 8;
                    if (b == 0xFF && runPages > 0 && runStart + runPages == firstPfn && firstPfn + 8 <= maxMapnr && descIndex + 8 <= descAvailable)
                    {
                        // Fast path: eight stored pages extending the current run.
                        runPages += 8;
                        descIndex += 8;
                        continue;
                    }
                    if (b == 0)
                    {
                        if (runPages > 0)
                        {
                            Flush(ref runPages);
                        }
                        continue;
                    }
                    for (int bit = 0; bit < 8; bit++)
                    {
                        ulong pfn = firstPfn + (ulong)bit;
                        if (pfn >= maxMapnr)
                        {
                            break;
                        }
                        if ((b & (1 << bit)) == 0)
                        {
                            if (runPages > 0)
                            {
                                Flush(ref runPages);
                            }
                            continue;
                        }
                        if (descIndex >= descAvailable)
                        {
                            clippedPages++;
                            continue;
                        }
                        if (runPages == 0)
                        {
                            runStart = pfn;
                            runDesc = descIndex;
                        }
                        runPages++;
                        descIndex++;
                    }
                }
            }
            if (runPages > 0)
            {
                Flush(ref runPages);
            }

            void Flush(ref ulong pages)
            {
                builder.Add(new PhysicalRun(runStart * (ulong)blockSize, pages * (ulong)blockSize, runDesc, RunStorage.Decoded), "bitmap2", bitmap2 + (long)(runStart / 8));
                pages = 0;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        if (clippedPages > 0)
        {
            metadata.Warnings.Add($"file is truncated: bitmap 2 lists {clippedPages} more stored pages than the page_desc array at 0x{descBase:X} holds; they read as holes");
        }
        long lost = StoredPagesPastEnd(source, descBase, descIndex, bigEndian);
        if (lost > 0)
        {
            metadata.Warnings.Add($"file is truncated: the data of {lost} stored pages (up to 0x{lost * (long)blockSize:X} bytes of memory) lies past its end; they read as holes");
        }
        metadata.Add("storedPages", descIndex.ToString(CultureInfo.InvariantCulture));
        var decoder = new KdumpPageDecoder(source, descBase, descIndex, blockSize, bigEndian, formatName);
        return new ParsedCapture(source, builder.ToArray(), decoder, metadata);
    }

    /// <summary>
    /// How many stored pages have their page_desc or their data past the end of the source (a truncated copy). Only
    /// counted when the last stored page is past the end (the pages are written in order, apart from the shared zero
    /// page near the start), so a whole file costs one descriptor read.
    /// </summary>
    private static long StoredPagesPastEnd(IByteSource source, long descBase, long stored, bool bigEndian)
    {
        byte[] desc = new byte[KdumpLayout.PageDescSize];
        bool Whole(long i)
        {
            if (source.Read(descBase + i * KdumpLayout.PageDescSize, desc) != desc.Length)
            {
                return false;
            }
            long offset = bigEndian ? BinaryPrimitives.ReadInt64BigEndian(desc) : BinaryPrimitives.ReadInt64LittleEndian(desc);
            uint size = bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(desc.AsSpan(KdumpLayout.DescSize)) : BinaryPrimitives.ReadUInt32LittleEndian(desc.AsSpan(KdumpLayout.DescSize));
            return offset > 0 && offset <= source.Length - size;
        }
        if (stored == 0 || Whole(stored - 1))
        {
            return 0;
        }
        long lost = 0;
        for (long i = 0; i < stored; i++)
        {
            lost += Whole(i) ? 0 : 1;
        }
        return lost;
    }

    private static bool IsBlockSize(FieldReader header, int offset)
    {
        if (offset + 4 > header.Length)
        {
            return false;
        }
        int value = header.I32(offset, "block_size");
        return value >= 512 && BitOperations.IsPow2(value);
    }

    /// <summary>The text of a fixed utsname field, for probes.</summary>
    public static string Ascii(ReadOnlySpan<byte> bytes)
    {
        int nul = bytes.IndexOf((byte)0);
        return Encoding.ASCII.GetString(nul >= 0 ? bytes[..nul] : bytes);
    }
}
