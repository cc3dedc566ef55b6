using System.Buffers.Binary;
using System.IO.Compression;

namespace CloudMem.Tests.Support;

/// <summary>Builds small captures in memory for parser tests (synthetic: every byte is known).</summary>
public static class CaptureBuilder
{
    /// <summary>Deterministic page content: the page's address repeated, so misplaced pages are caught.</summary>
    public static byte[] Pattern(ulong physicalAddress, int length)
    {
        byte[] data = new byte[length];
        for (int i = 0; i + 8 <= length; i += 8)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i), (physicalAddress + (ulong)i) * 0x9E3779B97F4A7C15UL);
        }
        return data;
    }

    /// <summary>The 32-byte range header LiME and AVML share (magic, version, start, inclusive end, zero).</summary>
    private static byte[] RangeHeader(uint magic, uint version, ulong start, int length)
    {
        byte[] header = new byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(header, magic);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), version);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8), start);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), start + (ulong)length - 1);
        return header;
    }

    public static byte[] Lime(params (ulong Start, int Length)[] ranges)
    {
        var output = new MemoryStream();
        foreach ((ulong start, int length) in ranges)
        {
            output.Write(RangeHeader(0x4C694D45, 1, start, length));
            output.Write(Pattern(start, length));
        }
        return output.ToArray();
    }

    public static byte[] Avml(params (ulong Start, int Length)[] ranges)
    {
        var output = new MemoryStream();
        foreach ((ulong start, int length) in ranges)
        {
            output.Write(RangeHeader(0x4C4D5641, 2, start, length));
            var framed = new MemoryStream();
            using (var snappy = new Snappier.SnappyStream(framed, CompressionMode.Compress, leaveOpen: true))
            {
                snappy.Write(Pattern(start, length));
            }
            output.Write(framed.ToArray());
            byte[] trailer = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(trailer, (ulong)framed.Length);
            output.Write(trailer);
        }
        return output.ToArray();
    }

    /// <summary>An ELF64 core with one PT_LOAD per segment (p_filesz may be below p_memsz) and optional notes.</summary>
    public static byte[] Elf(IReadOnlyList<(ulong PAddr, int FileSize, int MemSize)> segments, byte[]? notes = null)
    {
        int phnum = segments.Count + (notes is null ? 0 : 1);
        int dataStart = 64 + phnum * 56;
        var output = new MemoryStream();
        byte[] header = new byte[64];
        header[0] = 0x7F; header[1] = (byte)'E'; header[2] = (byte)'L'; header[3] = (byte)'F';
        header[4] = 2; header[5] = 1; header[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x10), 4);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x12), 0x3E);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(0x14), 1);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(0x20), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x34), 64);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x36), 56);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(0x38), (ushort)phnum);
        output.Write(header);
        long offset = dataStart;
        var bodies = new List<byte[]>();
        if (notes is not null)
        {
            output.Write(ProgramHeader(4, offset, 0, notes.Length, notes.Length));
            offset += notes.Length;
            bodies.Add(notes);
        }
        foreach ((ulong paddr, int fileSize, int memSize) in segments)
        {
            output.Write(ProgramHeader(1, offset, paddr, fileSize, memSize));
            offset += fileSize;
            bodies.Add(Pattern(paddr, fileSize));
        }
        foreach (byte[] body in bodies)
        {
            output.Write(body);
        }
        return output.ToArray();
    }

    private static byte[] ProgramHeader(uint type, long offset, ulong paddr, long fileSize, long memSize)
    {
        byte[] ph = new byte[56];
        BinaryPrimitives.WriteUInt32LittleEndian(ph, type);
        BinaryPrimitives.WriteInt64LittleEndian(ph.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt64LittleEndian(ph.AsSpan(0x10), paddr);
        BinaryPrimitives.WriteUInt64LittleEndian(ph.AsSpan(0x18), paddr);
        BinaryPrimitives.WriteInt64LittleEndian(ph.AsSpan(0x20), fileSize);
        BinaryPrimitives.WriteInt64LittleEndian(ph.AsSpan(0x28), memSize);
        return ph;
    }

    /// <summary>One ELF note (4-byte aligned).</summary>
    public static byte[] Note(string name, uint type, byte[] desc)
    {
        byte[] nameBytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        int nameLen = (nameBytes.Length + 3) & ~3;
        int descLen = (desc.Length + 3) & ~3;
        byte[] note = new byte[12 + nameLen + descLen];
        BinaryPrimitives.WriteUInt32LittleEndian(note, (uint)nameBytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(8), type);
        nameBytes.CopyTo(note, 12);
        desc.CopyTo(note, 12 + nameLen);
        return note;
    }

    /// <summary>
    /// A standard kdump (header version 6, x86_64) of <paramref name="pages"/> pages starting at PFN 0, where
    /// <paramref name="stored"/> says which are stored; pages compressed with zlib, snappy or zstd (or raw).
    /// </summary>
    public static byte[] Kdump(int pages, Func<int, bool> stored, string compression, byte[]? vmcoreinfo = null)
    {
        const int block = 4096;
        byte[] notes = vmcoreinfo is null ? [] : Note("VMCOREINFO", 0, vmcoreinfo);
        int subHdrBlocks = 1 + (notes.Length + 0x68) / block;
        int bitmapBytes = (pages + 7) / 8;
        int bitmapBlocks = 2 * ((bitmapBytes + block - 1) / block);
        var file = new MemoryStream();
        byte[] head = new byte[block];
        "KDUMP   "u8.CopyTo(head);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(8), 6);
        "Linux"u8.CopyTo(head.AsSpan(0x0C));
        "x86_64"u8.CopyTo(head.AsSpan(0x110));
        uint status = compression switch { "zlib" => 1u, "snappy" => 4u, "zstd" => 0x20u, _ => 0u };
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(0x1A8), status);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(0x1AC), block);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(0x1B0), subHdrBlocks);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(0x1B4), (uint)bitmapBlocks);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(0x1B8), (uint)pages);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(0x1CC), 1);
        file.Write(head);
        byte[] sub = new byte[subHdrBlocks * block];
        BinaryPrimitives.WriteInt64LittleEndian(sub.AsSpan(0x30), block + 0x68);
        BinaryPrimitives.WriteInt64LittleEndian(sub.AsSpan(0x38), notes.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(sub.AsSpan(0x60), (ulong)pages);
        notes.CopyTo(sub, 0x68);
        file.Write(sub);
        byte[] bitmaps = new byte[bitmapBlocks * block];
        int storedCount = 0;
        for (int p = 0; p < pages; p++)
        {
            bitmaps[p / 8] |= (byte)(1 << (p % 8));
            if (stored(p))
            {
                bitmaps[bitmaps.Length / 2 + p / 8] |= (byte)(1 << (p % 8));
                storedCount++;
            }
        }
        file.Write(bitmaps);
        long descBase = file.Length;
        long dataOffset = descBase + storedCount * 24L;
        var descs = new MemoryStream();
        var data = new MemoryStream();
        for (int p = 0; p < pages; p++)
        {
            if (!stored(p))
            {
                continue;
            }
            byte[] page = Pattern((ulong)p * block, block);
            (byte[] bytes, uint flag) = Compress(page, compression);
            byte[] desc = new byte[24];
            BinaryPrimitives.WriteInt64LittleEndian(desc, dataOffset + data.Length);
            BinaryPrimitives.WriteInt32LittleEndian(desc.AsSpan(8), bytes.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(desc.AsSpan(12), flag);
            descs.Write(desc);
            data.Write(bytes);
        }
        file.Write(descs.ToArray());
        file.Write(data.ToArray());
        return file.ToArray();
    }

    private static (byte[] Bytes, uint Flag) Compress(byte[] page, string compression)
    {
        switch (compression)
        {
            case "zlib":
                var z = new MemoryStream();
                using (var zs = new ZLibStream(z, CompressionLevel.Fastest, leaveOpen: true))
                {
                    zs.Write(page);
                }
                return (z.ToArray(), 1);
            case "snappy":
                return (Snappier.Snappy.CompressToArray(page), 4);
            case "zstd":
                using (var c = new ZstdSharp.Compressor(1))
                {
                    return (c.Wrap(page).ToArray(), 0x20);
                }
            default:
                return (page, 0);
        }
    }

    /// <summary>Wraps a file in makedumpfile's flattened format, in <paramref name="recordSize"/> pieces; the first
    /// block is written again at the end (last writer wins), after a zeroed first copy.</summary>
    public static byte[] Flatten(byte[] file, int recordSize)
    {
        var output = new MemoryStream();
        byte[] header = new byte[4096];
        "makedumpfile"u8.CopyTo(header);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(0x10), 1);
        BinaryPrimitives.WriteInt64BigEndian(header.AsSpan(0x18), 1);
        output.Write(header);
        void Record(long offset, ReadOnlySpan<byte> data)
        {
            byte[] rh = new byte[16];
            BinaryPrimitives.WriteInt64BigEndian(rh, offset);
            BinaryPrimitives.WriteInt64BigEndian(rh.AsSpan(8), data.Length);
            output.Write(rh);
            output.Write(data);
        }
        Record(0, new byte[4096]);
        for (int at = 4096; at < file.Length; at += recordSize)
        {
            Record(at, file.AsSpan(at, Math.Min(recordSize, file.Length - at)));
        }
        Record(0, file.AsSpan(0, 4096));
        byte[] end = new byte[16];
        end.AsSpan().Fill(0xFF);
        output.Write(end);
        return output.ToArray();
    }
}
