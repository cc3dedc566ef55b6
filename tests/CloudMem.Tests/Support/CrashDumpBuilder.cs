using System.Buffers.Binary;

namespace CloudMem.Tests.Support;

/// <summary>Windows crash dumps built byte by byte in the test (formats.md section 3), pages filled with <see cref="CaptureBuilder.Pattern"/>.</summary>
public static class CrashDumpBuilder
{
    public const int Page = 4096;
    public const uint PageFill = 0x45474150;   // "PAGE"

    private static byte[] FilledHeader(int size, uint validDump)
    {
        byte[] h = new byte[size];
        for (int i = 0; i < size; i += 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(i), PageFill);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(4), validDump);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 0xF);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0xC), 19041);
        return h;
    }

    /// <summary>64-bit header with the fields every test checks; DumpType and the descriptor left to the caller.</summary>
    public static byte[] Header64(uint dumpType, ulong dtb)
    {
        byte[] h = FilledHeader(0x2000, 0x34365544);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x10), dtb);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x18), 0xFFFFFA8000000000);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x20), 0xFFFFF80002A4E670);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x28), 0xFFFFF80002A2EB90);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x30), 0x8664);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x34), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x38), 0xE2);
        for (int i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x40 + 8 * i), (ulong)(i + 1));
        }
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0x80), 0xFFFFF800029F20A0);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0xF98), dumpType);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(0xFA8), 0x01D9_0000_0000_0000);
        return h;
    }

    /// <summary>A 64-bit full dump (DumpType 1): runs of (first PFN, pages), pages back to back after the header.</summary>
    public static byte[] Full64(IReadOnlyList<(ulong BasePage, ulong Pages)> runs, ulong dtb = 0x1AA000)
    {
        byte[] h = Header64(1, dtb);
        int block = 0x88;
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block), (uint)runs.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block + 4), 0);
        BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(block + 8), (ulong)runs.Sum(r => (long)r.Pages));
        for (int i = 0; i < runs.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(block + 0x10 + 16 * i), runs[i].BasePage);
            BinaryPrimitives.WriteUInt64LittleEndian(h.AsSpan(block + 0x18 + 16 * i), runs[i].Pages);
        }
        return Finish(h, runs, 0xFA0);
    }

    /// <summary>A 32-bit full dump ("PAGEDUMP", 0x1000-byte header, 32-bit descriptor).</summary>
    public static byte[] Full32(IReadOnlyList<(ulong BasePage, ulong Pages)> runs, bool pae, uint dtb = 0x185000)
    {
        byte[] h = FilledHeader(0x1000, 0x504D5544);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x10), dtb);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x14), 0x81000000);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x18), 0x8055B1C0);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x1C), 0x8055A1D8);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x20), 0x014C);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x24), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x28), 0x7E);
        h[0x5C] = pae ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0x60), 0x80545AE0);
        int block = 0x64;
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block), (uint)runs.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block + 4), (uint)runs.Sum(r => (long)r.Pages));
        for (int i = 0; i < runs.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block + 8 + 8 * i), (uint)runs[i].BasePage);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(block + 12 + 8 * i), (uint)runs[i].Pages);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(0xF88), 1);
        return Finish(h, runs, 0xFA0);
    }

    private static byte[] Finish(byte[] header, IReadOnlyList<(ulong BasePage, ulong Pages)> runs, int requiredAt)
    {
        var output = new MemoryStream();
        output.Write(header);
        foreach ((ulong basePage, ulong pages) in runs)
        {
            output.Write(CaptureBuilder.Pattern(basePage * Page, (int)pages * Page));
        }
        byte[] file = output.ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(requiredAt), (ulong)file.Length);
        return file;
    }

    /// <summary>
    /// A 64-bit bitmap dump: DumpType (5 by default), the SDMP/FDMP header at 0x2000, one bit per page of
    /// <paramref name="bits"/>, the stored pages packed in PFN order from the next page boundary.
    /// </summary>
    public static byte[] Bitmap64(ulong bits, Func<ulong, bool> stored, uint dumpType = 5, string signature = "FDMP")
    {
        byte[] h = Header64(dumpType, 0x1AA000);
        int bitmapBytes = (int)((bits + 7) / 8);
        int firstPage = (0x2000 + 0x38 + bitmapBytes + Page - 1) / Page * Page;
        byte[] bmp = new byte[firstPage - 0x2000];
        System.Text.Encoding.ASCII.GetBytes(signature).CopyTo(bmp, 0);
        "DUMP"u8.CopyTo(bmp.AsSpan(4));
        var data = new MemoryStream();
        ulong present = 0;
        for (ulong pfn = 0; pfn < bits; pfn++)
        {
            if (stored(pfn))
            {
                bmp[0x38 + (int)(pfn / 8)] |= (byte)(1 << (int)(pfn % 8));
                data.Write(CaptureBuilder.Pattern(pfn * Page, Page));
                present++;
            }
        }
        BinaryPrimitives.WriteUInt64LittleEndian(bmp.AsSpan(0x20), (ulong)firstPage);
        BinaryPrimitives.WriteUInt64LittleEndian(bmp.AsSpan(0x28), present);
        BinaryPrimitives.WriteUInt64LittleEndian(bmp.AsSpan(0x30), bits);
        byte[] file = [.. h, .. bmp, .. data.ToArray()];
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0xFA0), (ulong)file.Length);
        return file;
    }
}
