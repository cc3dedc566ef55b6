namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>
/// makedumpfile's compressed dump ("KDUMP   "): disk_dump_header in block 0, kdump_sub_header in block 1,
/// then notes, bitmaps, the page_desc array and page data. Stored in the dumped machine's byte order.
/// </summary>
internal static class KdumpLayout
{
    public const string Signature = "KDUMP   ";
    public const string OldSignature = "DISKDUMP";
    public const int SignatureOffset = 0x000;
    public const int HeaderVersion = 0x008;      // i32
    public const int Utsname = 0x00C;            // 6 x 65 bytes
    public const int UtsLength = 65;
    public const int UtsMachine = Utsname + 4 * UtsLength; // 0x110

    /// <summary>disk_dump_header fields after utsname, for a 64-bit dumped machine.</summary>
    public static class H64
    {
        public const int TimestampSec = 0x198;   // i64
        public const int Status = 0x1A8;         // u32
        public const int BlockSize = 0x1AC;      // i32
        public const int SubHdrSize = 0x1B0;     // i32 (blocks)
        public const int BitmapBlocks = 0x1B4;   // u32 (both bitmaps)
        public const int MaxMapnr = 0x1B8;       // u32 (see max_mapnr_64)
        public const int TotalRamBlocks = 0x1BC;
        public const int DeviceBlocks = 0x1C0;
        public const int WrittenBlocks = 0x1C4;
        public const int CurrentCpu = 0x1C8;
        public const int NrCpus = 0x1CC;
        public const int Size = 0x1D0;
    }

    /// <summary>The same fields for a 32-bit dumped machine (struct timeval is 8 bytes there).</summary>
    public static class H32
    {
        public const int TimestampSec = 0x194;   // i32
        public const int Status = 0x19C;
        public const int BlockSize = 0x1A0;
        public const int SubHdrSize = 0x1A4;
        public const int BitmapBlocks = 0x1A8;
        public const int MaxMapnr = 0x1AC;
        public const int TotalRamBlocks = 0x1B0;
        public const int DeviceBlocks = 0x1B4;
        public const int WrittenBlocks = 0x1B8;
        public const int CurrentCpu = 0x1BC;
        public const int NrCpus = 0x1C0;
        public const int Size = 0x1C4;
    }

    /// <summary>kdump_sub_header at file offset block_size. Three layouts: 64-bit, i386 (packed), other 32-bit (u64 8-aligned).</summary>
    public readonly record struct SubHeader(
        int PhysBase, bool PhysBaseIs64, int DumpLevel, int Split, int OffsetVmcoreinfo, int SizeVmcoreinfo, bool SizesAre64,
        int OffsetNote, int SizeNote, int OffsetEraseinfo, int SizeEraseinfo, int StartPfn64, int EndPfn64, int MaxMapnr64, int Size);

    public static readonly SubHeader Sub64 = new(0x00, true, 0x08, 0x0C, 0x20, 0x28, true, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58, 0x60, 0x68);
    public static readonly SubHeader Sub32Packed = new(0x00, false, 0x04, 0x08, 0x14, 0x1C, false, 0x20, 0x28, 0x2C, 0x34, 0x38, 0x40, 0x48, 0x50);
    public static readonly SubHeader Sub32Aligned = new(0x00, false, 0x04, 0x08, 0x18, 0x20, false, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58, 0x60);

    /// <summary>page_desc: 24 bytes per stored page, in ascending PFN order.</summary>
    public const int PageDescSize = 24;
    public const int DescOffset = 0x00;          // i64 file offset of the stored bytes
    public const int DescSize = 0x08;            // u32 stored bytes
    public const int DescFlags = 0x0C;           // u32 compression

    public const uint CompressZlib = 0x01;
    public const uint CompressLzo = 0x02;
    public const uint CompressSnappy = 0x04;
    public const uint StatusIncomplete = 0x08;
    public const uint StatusExcludedVmemmap = 0x10;
    public const uint CompressZstd = 0x20;

    public static string CompressionName(uint flags)
    {
        var names = new List<string>();
        if ((flags & CompressZlib) != 0) names.Add("zlib");
        if ((flags & CompressLzo) != 0) names.Add("lzo");
        if ((flags & CompressSnappy) != 0) names.Add("snappy");
        if ((flags & CompressZstd) != 0) names.Add("zstd");
        return names.Count == 0 ? "none" : string.Join('+', names);
    }

    public static bool Is64BitMachine(string machine)
        => machine is "x86_64" or "aarch64" or "ppc64" or "ppc64le" or "s390x" or "riscv64" or "mips64" or "loongarch64" or "sparc64" or "ia64" or "alpha";

    public static bool IsPackedI386(string machine)
        => machine is "i386" or "i486" or "i586" or "i686" or "x86";
}
