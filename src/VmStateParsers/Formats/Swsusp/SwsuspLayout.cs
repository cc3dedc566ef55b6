namespace CloudMem.VmStateParsers.Formats.Swsusp;

/// <summary>
/// On-disk layout of a Linux hibernation image (swsusp) in a swap area, 64-bit kernels with 4 KiB pages.
/// Sources read: kernel/power/swap.c, kernel/power/snapshot.c, kernel/power/power.h and arch/x86/power/hibernate.c
/// of a current mainline tree (crypto acomp compressors, 6.16+) and kernel/power/swap.c of a 6.7/6.8-era tree
/// (LZO-only); the structures below are the same in both.
/// </summary>
/// <remarks>
/// Every "sector" the kernel stores (swsusp_header.image, swap_map_page entries and next_swap) is a page number on
/// the block device that holds the swap area: for a swap partition, the page number inside the partition; for a swap
/// file, the device page that the file's page maps to (the header page itself is at device page resume_offset).
/// </remarks>
internal static class SwsuspLayout
{
    public const int PageSize = 4096;

    // union swap_header (include/linux/swap.h): the info part sits after 1024 boot bytes; the magic ends the page.
    public const int SwapVersionOffset = 0x400;   // u32 version (1)
    public const int SwapLastPageOffset = 0x404;  // u32 last_page: pages in the area - 1
    public const int SwapBadPagesOffset = 0x408;  // u32 nr_badpages
    public const int SwapUuidOffset = 0x40C;      // u8[16]
    public const int SwapLabelOffset = 0x41C;     // char[16]

    // struct swsusp_header (kernel/power/swap.c, __packed, fills the swap header page; fields from the end).
    public const int HwSigOffset = 0xFD8;         // u32 hw_sig (when SF_HW_SIG)
    public const int Crc32Offset = 0xFDC;         // u32 crc32 of the uncompressed stream (when SF_CRC32_MODE)
    public const int ImageOffset = 0xFE0;         // sector_t image: first swap_map_page
    public const int FlagsOffset = 0xFE8;         // unsigned int flags
    public const int OrigSigOffset = 0xFEC;       // char orig_sig[10]: the swap signature it replaced
    public const int SigOffset = 0xFF6;           // char sig[10]
    public const int SigLength = 10;

    public static ReadOnlySpan<byte> KernelSignature => "S1SUSPEND\0"u8;   // HIBERNATE_SIG, memcpy'd with its NUL
    public static ReadOnlySpan<byte> OldKernelSignature => "LINHIB0001"u8; // HIBERNATE_SIG of older kernels
    public static ReadOnlySpan<byte> SwapSpace2 => "SWAPSPACE2"u8;
    public static ReadOnlySpan<byte> SwapSpace1 => "SWAP-SPACE"u8;
    public static ReadOnlySpan<byte> UswsuspS2 => "S2SUSPEND"u8;          // userspace suspend (uswsusp), other layout
    public static ReadOnlySpan<byte> UswsuspUl => "ULSUSPEND"u8;

    // Flags (kernel/power/power.h).
    public const uint FlagPlatformMode = 1;       // SF_PLATFORM_MODE
    public const uint FlagNoCompress = 2;         // SF_NOCOMPRESS_MODE
    public const uint FlagCrc32 = 4;              // SF_CRC32_MODE
    public const uint FlagHwSig = 8;              // SF_HW_SIG
    public const uint FlagLz4 = 16;               // SF_COMPRESSION_ALG_LZ4 (LZO when clear)

    // struct swap_map_page: sector_t entries[PAGE_SIZE / 8 - 1]; sector_t next_swap.
    public const int MapEntries = PageSize / 8 - 1;   // 511
    public const int MapNextOffset = MapEntries * 8;  // 0xFF8

    // struct swsusp_info (kernel/power/power.h, LP64): new_utsname is 6 x 65 chars.
    public const int UtsFieldLength = 65;
    public const int UtsSysname = 0;
    public const int UtsNodename = 65;
    public const int UtsRelease = 130;
    public const int UtsVersion = 195;
    public const int UtsMachine = 260;
    public const int VersionCodeOffset = 0x188;   // u32 (390 rounded up to 4)
    public const int NumPhysPagesOffset = 0x190;  // unsigned long
    public const int CpusOffset = 0x198;          // int
    public const int ImagePagesOffset = 0x1A0;    // unsigned long: data pages stored (nr_copy_pages)
    public const int PagesOffset = 0x1A8;         // unsigned long: 1 + meta pages + image pages
    public const int SizeOffset = 0x1B0;          // unsigned long: pages * PAGE_SIZE

    // x86-64 writes struct restore_data_record over the utsname (CONFIG_ARCH_HIBERNATION_HEADER).
    public const int X86JumpAddressOffset = 0x00;
    public const int X86JumpAddressPhysOffset = 0x08;
    public const int X86Cr3Offset = 0x10;
    public const int X86MagicOffset = 0x18;
    public const int X86E820ChecksumOffset = 0x20;
    public const ulong X86RestoreMagic = 0x23456789ABCDEF02UL;

    // PFN list (meta pages): unsigned long per saved page, ascending; BM_END_OF_MAP ends a short last page.
    public const int PfnsPerPage = PageSize / 8;
    public const ulong EndOfMap = ulong.MaxValue;
    public const ulong ZeroPageFlag = 1UL << 63;  // ENCODED_PFN_ZERO_FLAG (6.3+): page was all zeros, not stored

    // Compressed stream: chunks of up to UNC_PAGES pages, each starting on a fresh swap page with a size_t length.
    public const int ChunkHeader = 8;             // CMP_HEADER = sizeof(size_t)
    public const int ChunkPages = 32;             // UNC_PAGES
    public const int ChunkBytes = ChunkPages * PageSize;
    public const int MaxCompressed = ChunkBytes + ChunkBytes / 16 + 64 + 3 + 2; // bytes_worst_compress(UNC_SIZE)
}
