namespace CloudMem.VmStateParsers.Formats.Hibernation;

/// <summary>
/// One layout of the PO_MEMORY_IMAGE header (page 0 of hiberfil.sys, Windows 8 and later), identified by its
/// <c>LengthSelf</c> field at 0xC. Offsets are byte offsets into page 0; "pointer" fields are u64 on x64 and u32
/// on x86. Source: the per-build offset table of LeechCore <c>device_hibr.c</c>, cross-checked for Windows 10/11 x64
/// with Volatility 3 <c>layers/hib.py</c> (docs formats.md 7.2). Not checked against real Windows files here.
/// </summary>
/// <param name="Name">Short layout name (used as the hiberfil writer's variant).</param>
/// <param name="Builds">The Windows versions and builds known to use it.</param>
/// <param name="LengthSelf">sizeof(PO_MEMORY_IMAGE), the value at 0xC that selects this layout.</param>
/// <param name="Is32Bit">x86: 4-byte pointers and 4-byte page descriptors.</param>
/// <param name="PageSize">u32 PageSize (must be 4096).</param>
/// <param name="SystemTime">u64 SystemTime (FILETIME of the hibernation).</param>
/// <param name="NumPagesForLoader">u64 pages in the boot (loader) restoration set.</param>
/// <param name="FirstBootRestorePage">pointer: file page of the boot restoration set.</param>
/// <param name="FirstKernelRestorePage">pointer: file page of the kernel restoration set.</param>
/// <param name="KernelPagesProcessed">u64 pages in the kernel restoration set.</param>
/// <param name="HighestPhysicalPage">pointer: highest physical page number of the machine.</param>
public sealed record HibernationProfile(
    string Name,
    string Builds,
    int LengthSelf,
    bool Is32Bit,
    int PageSize,
    int SystemTime,
    int NumPagesForLoader,
    int FirstBootRestorePage,
    int FirstKernelRestorePage,
    int KernelPagesProcessed,
    int HighestPhysicalPage)
{
    /// <summary>Bytes of a pointer field.</summary>
    public int PointerSize => Is32Bit ? 4 : 8;

    /// <summary>Bytes of one page descriptor of a compression set.</summary>
    public int DescriptorSize => Is32Bit ? 4 : 8;
}

/// <summary>The hiberfil.sys layouts we know (Windows 8 to 11 24H2), and the constants of the format.</summary>
public static class HibernationLayout
{
    /// <summary>"HIBR": a complete hibernation image.</summary>
    public const uint SignatureHibr = 0x52424948;
    /// <summary>"WAKE": the image is being (or was) resumed from; LeechCore reads it like HIBR.</summary>
    public const uint SignatureWake = 0x454B4157;
    /// <summary>"RSTR": restore in progress [unverified for Windows 8+].</summary>
    public const uint SignatureRstr = 0x52545352;
    /// <summary>"HORM": hibernate once, resume many (embedded) [unverified for Windows 8+].</summary>
    public const uint SignatureHorm = 0x4D524F48;
    /// <summary>"hibr" (lower case): Windows XP/Vista/7 format, not supported.</summary>
    public const uint SignatureLegacyHibr = 0x72626968;
    /// <summary>"wake" (lower case): Windows XP/Vista/7 format, not supported.</summary>
    public const uint SignatureLegacyWake = 0x656B6177;

    /// <summary>u32 signature (HIBR, WAKE...), the same place in every layout.</summary>
    public const int SignatureOffset = 0x00;
    /// <summary>u32 LengthSelf, the same place in every layout.</summary>
    public const int LengthSelfOffset = 0x0C;
    /// <summary>Page size of every supported layout.</summary>
    public const int PageSize = 4096;

    /// <summary>Compression set: a u32 header, then the page descriptors (<see cref="HibernationProfile.DescriptorSize"/> each), then the data.</summary>
    public const int SetHeaderSize = 4;
    /// <summary>Compression set header: bits 0-7 descriptor count.</summary>
    public const uint SetDescriptorCountMask = 0xFF;
    /// <summary>Compression set header: bits 8-29 stored data size.</summary>
    public const int SetSizeShift = 8;
    /// <summary>22 bits of stored size.</summary>
    public const uint SetSizeMask = 0x3FFFFF;
    /// <summary>Compression set header: bits 30-31 compression type (0 = Xpress plain LZ77, otherwise Xpress Huffman).</summary>
    public const int SetTypeShift = 30;
    /// <summary>Page descriptor: bits 0-3 = pages - 1, the rest = first PFN.</summary>
    public const int DescriptorPageBits = 4;
    /// <summary>At most 16 pages per descriptor.</summary>
    public const int MaxPagesPerDescriptor = 16;

    /// <summary>The known layouts, x64 newest first, then x86. Several builds share one LengthSelf and the same offsets.</summary>
    public static IReadOnlyList<HibernationProfile> Profiles { get; } =
    [
        new("win11-24h2", "x64 Windows 11 24H2 (build 26100)", 0x4D8, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x238, 0x498),
        new("win11", "x64 Windows 11 21H2-23H2 / Server 2022 (builds 20348, 22000, 22621, 22631)", 0x448, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x230, 0x400),
        new("win10-1809", "x64 Windows 10 1809-22H2 (builds 17763-19045)", 0x3E0, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x230, 0x398),
        new("win10-1703", "x64 Windows 10 1703-1803 (builds 15063-17134)", 0x3D8, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x230, 0x398),
        new("win10-1607", "x64 Windows 10 1607 (build 14393)", 0x3C8, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x220, 0x388),
        new("win10-1507", "x64 Windows 10 1507-1511 (builds 10240, 10586)", 0x3B0, false, 0x18, 0x20, 0x58, 0x68, 0x70, 0x218, 0x380),
        new("win8", "x64 Windows 8/8.1 (builds 9200, 9600)", 0x360, false, 0x18, 0x20, 0x58, 0x60, 0x68, 0x1C8, 0x330),
        new("x86-win10-1809", "x86 Windows 10 1809-2004 (builds 17763-19041)", 0x340, true, 0x14, 0x18, 0x48, 0x50, 0x54, 0x210, 0x310),
        new("x86-win10-1703", "x86 Windows 10 1703-1803 (builds 15063-17134)", 0x338, true, 0x14, 0x18, 0x48, 0x50, 0x54, 0x210, 0x310),
        new("x86-win10-1607", "x86 Windows 10 1607 (build 14393)", 0x328, true, 0x14, 0x18, 0x48, 0x50, 0x54, 0x200, 0x300),
        new("x86-win10-1507", "x86 Windows 10 1507-1511 (builds 10240, 10586)", 0x310, true, 0x14, 0x18, 0x48, 0x50, 0x54, 0x1F8, 0x2F8),
        new("x86-win8", "x86 Windows 8/8.1 (builds 9200, 9600)", 0x2C8, true, 0x14, 0x18, 0x48, 0x50, 0x54, 0x1B0, 0x2B0),
    ];

    /// <summary>The layout whose LengthSelf is <paramref name="lengthSelf"/>, or null.</summary>
    public static HibernationProfile? FindByLengthSelf(uint lengthSelf)
    {
        foreach (HibernationProfile p in Profiles)
        {
            if ((uint)p.LengthSelf == lengthSelf)
            {
                return p;
            }
        }
        return null;
    }

    /// <summary>The layout named <paramref name="name"/> (case-insensitive), or null.</summary>
    public static HibernationProfile? FindByName(string name)
    {
        foreach (HibernationProfile p in Profiles)
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return p;
            }
        }
        return null;
    }
}
