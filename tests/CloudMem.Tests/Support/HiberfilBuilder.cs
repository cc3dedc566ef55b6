using System.Buffers.Binary;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Formats.Hibernation;

namespace CloudMem.Tests.Support;

/// <summary>How a synthetic compression set stores its pages.</summary>
public enum HiberCodec
{
    /// <summary>Type 0, our Xpress LZ77 compressor.</summary>
    Plain,
    /// <summary>Type 0, literal-only plain LZ77 written here (independent of our compressor).</summary>
    LiteralPlain,
    /// <summary>Type 2, literal-only Xpress Huffman written here (256 eight-bit codes).</summary>
    Huffman2,
    /// <summary>Type 3, as Huffman2.</summary>
    Huffman3,
    /// <summary>Type 1 carrying Huffman data (LeechCore's reading).</summary>
    Type1Huffman,
    /// <summary>Type 1 carrying plain LZ77 data (Volatility 3's reading).</summary>
    Type1Plain,
    /// <summary>Stored: size = pages x 4096.</summary>
    Stored,
}

/// <summary>One compression set of a synthetic hiberfil: its pages (physical page numbers, in stored order) and codec.</summary>
public sealed record HiberSet(ulong[] Pfns, HiberCodec Codec);

/// <summary>Where the builder put things (for corruption tests).</summary>
public sealed record HiberLayoutInfo(List<long> SetHeaders, List<long> SetData, long KernelStart);

/// <summary>
/// Builds Windows 8+ hibernation files in the test, byte by byte from the layout in docs/formats.md section 7
/// (independent of the hiberfil writer): header page, boot restoration set at page 1, kernel set at the next page.
/// </summary>
public sealed class HiberfilBuilder(HibernationProfile profile)
{
    public List<HiberSet> Boot { get; } = [];
    public List<HiberSet> Kernel { get; } = [];
    public uint Signature { get; set; } = HibernationLayout.SignatureHibr;
    public ulong? Highest { get; set; }

    /// <summary>Content of a physical page: a pattern in the first half, zeros in the second (so it compresses).</summary>
    public static byte[] Page(ulong pfn)
    {
        byte[] page = CaptureBuilder.Pattern(pfn * 4096, 4096);
        page.AsSpan(2048).Clear();
        return page;
    }

    public byte[] Build() => Build(out _);

    public byte[] Build(out HiberLayoutInfo info)
    {
        info = new HiberLayoutInfo([], [], 0);
        var boot = new MemoryStream();
        foreach (HiberSet set in Boot)
        {
            WriteSet(boot, set, 4096, info);
        }
        long kernelStart = 4096 + (boot.Length + 4095) / 4096 * 4096;
        var kernel = new MemoryStream();
        foreach (HiberSet set in Kernel)
        {
            WriteSet(kernel, set, kernelStart, info);
        }
        byte[] file = new byte[kernelStart + Math.Max(kernel.Length, 1)];
        Span<byte> h = file;
        BinaryPrimitives.WriteUInt32LittleEndian(h, Signature);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0xC..], (uint)profile.LengthSelf);
        BinaryPrimitives.WriteUInt32LittleEndian(h[profile.PageSize..], 4096);
        BinaryPrimitives.WriteUInt64LittleEndian(h[profile.SystemTime..], 133500000000000000); // FILETIME of 2024-01-17 21:20:00 UTC
        BinaryPrimitives.WriteUInt64LittleEndian(h[profile.NumPagesForLoader..], (ulong)Boot.Sum(s => s.Pfns.Length));
        BinaryPrimitives.WriteUInt64LittleEndian(h[profile.KernelPagesProcessed..], (ulong)Kernel.Sum(s => s.Pfns.Length));
        ulong highest = Highest ?? Boot.Concat(Kernel).SelectMany(s => s.Pfns).DefaultIfEmpty(0UL).Max();
        Pointer(h, profile.FirstBootRestorePage, 1);
        Pointer(h, profile.FirstKernelRestorePage, (ulong)kernelStart / 4096);
        Pointer(h, profile.HighestPhysicalPage, highest);
        boot.ToArray().CopyTo(file, 4096);
        kernel.ToArray().CopyTo(file, kernelStart);
        info = info with { KernelStart = kernelStart };
        return file;
    }

    private void Pointer(Span<byte> h, int offset, ulong value)
    {
        if (profile.Is32Bit)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(h[offset..], (uint)value);
        }
        else
        {
            BinaryPrimitives.WriteUInt64LittleEndian(h[offset..], value);
        }
    }

    private void WriteSet(MemoryStream output, HiberSet set, long baseOffset, HiberLayoutInfo info)
    {
        byte[] raw = set.Pfns.SelectMany(Page).ToArray();
        byte[] data = set.Codec switch
        {
            HiberCodec.Plain => Compress(raw),
            HiberCodec.LiteralPlain or HiberCodec.Type1Plain => LiteralPlain(raw),
            HiberCodec.Huffman2 or HiberCodec.Huffman3 or HiberCodec.Type1Huffman => LiteralHuffman(raw),
            _ => raw,
        };
        if (set.Codec != HiberCodec.Stored && data.Length == raw.Length)
        {
            throw new InvalidOperationException("compressed size equals the raw size: the reader would take it as stored");
        }
        uint type = set.Codec switch
        {
            HiberCodec.Huffman2 => 2u,
            HiberCodec.Huffman3 => 3u,
            HiberCodec.Type1Huffman or HiberCodec.Type1Plain => 1u,
            _ => 0u,
        };
        var descriptors = new List<ulong>();
        for (int i = 0; i < set.Pfns.Length;)
        {
            int j = i + 1;
            while (j < set.Pfns.Length && set.Pfns[j] == set.Pfns[j - 1] + 1 && j - i < 16)
            {
                j++;
            }
            descriptors.Add((set.Pfns[i] << 4) | (uint)(j - i - 1));
            i = j;
        }
        info.SetHeaders.Add(baseOffset + output.Length);
        byte[] header = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)descriptors.Count | ((uint)data.Length << 8) | (type << 30));
        output.Write(header);
        foreach (ulong d in descriptors)
        {
            byte[] bytes = new byte[profile.DescriptorSize];
            if (profile.Is32Bit)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)d);
            }
            else
            {
                BinaryPrimitives.WriteUInt64LittleEndian(bytes, d);
            }
            output.Write(bytes);
        }
        info.SetData.Add(baseOffset + output.Length);
        output.Write(data);
    }

    private static byte[] Compress(byte[] raw)
    {
        byte[] out_ = new byte[XpressLz77Compressor.MaxCompressedLength(raw.Length)];
        int n = XpressLz77Compressor.Compress(raw, out_);
        return out_[..n];
    }

    /// <summary>Plain LZ77 with only literals: a zero flag word before every 32 bytes.</summary>
    public static byte[] LiteralPlain(byte[] raw)
    {
        var output = new MemoryStream();
        for (int i = 0; i < raw.Length; i += 32)
        {
            output.Write(new byte[4]);
            output.Write(raw, i, Math.Min(32, raw.Length - i));
        }
        return output.ToArray();
    }

    /// <summary>
    /// Xpress Huffman with only literals: every literal has an 8-bit code (a complete canonical code whose code for
    /// byte b is b), so each block's bit stream is its bytes in 16-bit little-endian words read most significant bit
    /// first, i.e. each pair of bytes swapped. Blocks of 65536 bytes; the reader has loaded one word beyond a block's
    /// bits when the block ends, so the next block's table starts one word later.
    /// </summary>
    public static byte[] LiteralHuffman(byte[] raw)
    {
        if (raw.Length % 2 != 0)
        {
            throw new ArgumentException("an even length", nameof(raw));
        }
        var output = new MemoryStream();
        for (int block = 0; block < raw.Length; block += 65536)
        {
            int length = Math.Min(65536, raw.Length - block);
            byte[] table = new byte[256];
            table.AsSpan(0, 128).Fill(0x88);
            output.Write(table);
            for (int i = block; i < block + length; i += 2)
            {
                output.WriteByte(raw[i + 1]);
                output.WriteByte(raw[i]);
            }
            output.Write(new byte[2]);
        }
        return output.ToArray();
    }
}
