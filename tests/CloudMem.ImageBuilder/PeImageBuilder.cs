using System.Buffers.Binary;
using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// A minimal mapped x64 PE image built in the test: DOS header, PE header, PE32+ optional header with a debug data
/// directory, one section, an IMAGE_DEBUG_DIRECTORY entry of type CodeView pointing at an RSDS record. Fields are
/// public so hostile tests can break them.
/// </summary>
public sealed class PeImageBuilder
{
    /// <summary>The Windows 10 19041 kernel whose ISF is in shared/symbols/windows/ntkrnlmp.pdb.</summary>
    public const string Win10Guid = "606FF669409B00F7FC8C61A9C1670129";

    public const int LfanewValue = 0x80;
    public const int OptionalHeader = LfanewValue + 24;
    public const int DebugDataDirectory = OptionalHeader + 112 + 6 * 8;
    public const int DebugDirectoryRva = 0x1000;
    public const int RsdsRva = 0x1040;

    public uint Lfanew { get; set; } = LfanewValue;
    public ushort Machine { get; set; } = 0x8664;
    public ushort SizeOfOptionalHeader { get; set; } = 0xF0;
    public uint SizeOfImage { get; set; } = 0x3000;
    public uint DebugRva { get; set; } = DebugDirectoryRva;
    public uint DebugSize { get; set; } = 28;
    public uint DebugType { get; set; } = 2;
    public uint RsdsAddress { get; set; } = RsdsRva;
    public string PdbPath { get; set; } = "ntkrnlmp.pdb";
    public byte[] GuidBytes { get; set; } = GuidToBytes(Win10Guid);
    public uint Age { get; set; } = 1;

    /// <summary>ImageBase of the optional header (a kernel address by default; a DLL's load address for user modules).</summary>
    public ulong ImageBase { get; set; } = 0xFFFFF80000000000;

    /// <summary>File characteristics (0x22: executable, large address aware; add 0x2000 for a DLL).</summary>
    public ushort Characteristics { get; set; } = 0x22;

    /// <summary>AddressOfEntryPoint (RVA).</summary>
    public uint EntryPoint { get; set; }

    /// <summary>RVA of the optional executable section (its page is the image's third).</summary>
    public const int TextRva = 0x2000;

    /// <summary>File offset of the optional executable section (after .rdata's 0x1000 raw bytes).</summary>
    public const int TextRawOffset = 0x1400;

    /// <summary>
    /// Code for a second section, ".text" (execute/read, at <see cref="TextRva"/>, raw at <see cref="TextRawOffset"/>,
    /// SizeOfRawData rounded up to FileAlignment); null (the default) keeps the one-section image.
    /// </summary>
    public byte[]? Text { get; set; }

    /// <summary>The on-disk bytes of a GUID written as 32 hex digits (Data1..Data3 little-endian).</summary>
    public static byte[] GuidToBytes(string hex)
    {
        byte[] text = Convert.FromHexString(hex);
        byte[] bytes = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, BinaryPrimitives.ReadUInt32BigEndian(text));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), BinaryPrimitives.ReadUInt16BigEndian(text.AsSpan(4)));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), BinaryPrimitives.ReadUInt16BigEndian(text.AsSpan(6)));
        text.AsSpan(8).CopyTo(bytes.AsSpan(8));
        return bytes;
    }

    /// <summary>The mapped image (3 pages).</summary>
    public byte[] Build()
    {
        byte[] image = new byte[0x3000];
        Span<byte> s = image;
        s[0] = (byte)'M';
        s[1] = (byte)'Z';
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x3C..], Lfanew);
        int nt = LfanewValue;
        "PE\0\0"u8.CopyTo(s[nt..]);
        BinaryPrimitives.WriteUInt16LittleEndian(s[(nt + 4)..], Machine);
        BinaryPrimitives.WriteUInt16LittleEndian(s[(nt + 6)..], (ushort)(Text is null ? 1 : 2));    // NumberOfSections
        BinaryPrimitives.WriteUInt16LittleEndian(s[(nt + 20)..], SizeOfOptionalHeader);
        BinaryPrimitives.WriteUInt16LittleEndian(s[(nt + 22)..], Characteristics);
        int opt = OptionalHeader;
        BinaryPrimitives.WriteUInt16LittleEndian(s[opt..], 0x20B);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 16)..], EntryPoint);
        BinaryPrimitives.WriteUInt64LittleEndian(s[(opt + 24)..], ImageBase);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 32)..], 0x1000);              // SectionAlignment
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 36)..], 0x200);               // FileAlignment
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 56)..], SizeOfImage);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 60)..], 0x400);               // SizeOfHeaders
        BinaryPrimitives.WriteUInt32LittleEndian(s[(opt + 108)..], 16);                 // NumberOfRvaAndSizes
        BinaryPrimitives.WriteUInt32LittleEndian(s[DebugDataDirectory..], DebugRva);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(DebugDataDirectory + 4)..], DebugSize);
        int section = opt + 0xF0;
        ".rdata\0\0"u8.CopyTo(s[section..]);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(section + 8)..], 0x1000);           // VirtualSize
        BinaryPrimitives.WriteUInt32LittleEndian(s[(section + 12)..], 0x1000);          // VirtualAddress
        BinaryPrimitives.WriteUInt32LittleEndian(s[(section + 16)..], 0x1000);          // SizeOfRawData
        BinaryPrimitives.WriteUInt32LittleEndian(s[(section + 20)..], 0x400);           // PointerToRawData
        BinaryPrimitives.WriteUInt32LittleEndian(s[(section + 36)..], 0x40000040);      // initialised data, readable
        if (Text is not null)
        {
            if (Text.Length > 0x1000)
            {
                throw new InvalidOperationException(".text is limited to one page");
            }
            int text = section + 40;
            ".text\0\0\0"u8.CopyTo(s[text..]);
            BinaryPrimitives.WriteUInt32LittleEndian(s[(text + 8)..], (uint)Text.Length);               // VirtualSize
            BinaryPrimitives.WriteUInt32LittleEndian(s[(text + 12)..], TextRva);                       // VirtualAddress
            BinaryPrimitives.WriteUInt32LittleEndian(s[(text + 16)..], (uint)((Text.Length + 0x1FF) & ~0x1FF));   // SizeOfRawData
            BinaryPrimitives.WriteUInt32LittleEndian(s[(text + 20)..], TextRawOffset);                 // PointerToRawData
            BinaryPrimitives.WriteUInt32LittleEndian(s[(text + 36)..], 0x60000020);                    // code, execute, read
            Text.CopyTo(s[TextRva..]);
        }
        byte[] name = Encoding.UTF8.GetBytes(PdbPath);
        int dir = DebugDirectoryRva;
        BinaryPrimitives.WriteUInt32LittleEndian(s[(dir + 12)..], DebugType);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(dir + 16)..], (uint)(24 + name.Length + 1));
        BinaryPrimitives.WriteUInt32LittleEndian(s[(dir + 20)..], RsdsAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(dir + 24)..], 0x440);
        int rsds = RsdsRva;
        "RSDS"u8.CopyTo(s[rsds..]);
        GuidBytes.CopyTo(s[(rsds + 4)..]);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(rsds + 20)..], Age);
        name.CopyTo(s[(rsds + 24)..]);
        return image;
    }

    /// <summary>A raw capture of <paramref name="size"/> bytes with images placed at physical addresses.</summary>
    public static byte[] RawCapture(int size, params (int Address, byte[] Image)[] images)
    {
        byte[] memory = new byte[size];
        var random = new Random(1234);
        random.NextBytes(memory.AsSpan(0, 0x1000));           // some garbage in the first page
        foreach ((int address, byte[] image) in images)
        {
            image.AsSpan(0, Math.Min(image.Length, size - address)).CopyTo(memory.AsSpan(address));
        }
        return memory;
    }
}
