namespace CloudMem.VmStateParsers.Formats.Vmware;

/// <summary>
/// The VMware checkpoint container (.vmss suspend state, .vmsn snapshot state): a header, a table of group
/// descriptors, and per group a run of tags ending with a zero tag word. All little-endian.
/// See docs formats.md section 2.
/// </summary>
internal static class VmwareLayout
{
    // Header (12 bytes), then NumGroups group descriptors.
    public const int MagicOffset = 0x0;           // u32, one of the magic values below
    public const int VersionOffset = 0x4;         // u32, format version (not interpreted)
    public const int NumGroupsOffset = 0x8;       // u32
    public const int HeaderSize = 0xC;

    // Group descriptor (80 bytes).
    public const int GroupNameOffset = 0x00;      // 64 bytes, NUL-padded ASCII
    public const int GroupNameLength = 64;
    public const int GroupPositionOffset = 0x40;  // u64, file offset of the group's first tag
    public const int GroupSizeOffset = 0x48;      // u64, bytes of the group's tag area
    public const int GroupSize = 0x50;

    // Tag word (u16): bits 15..8 name length, 7..6 index count, 5..0 value size (62/63: block).
    public const int TagWordSize = 2;
    public const int IndexSize = 4;               // each index is a u32
    public const int MaxIndices = 3;
    public const int BlockCompressed = 62;        // block whose data is compressed (undocumented codec)
    public const int Block = 63;                  // block: diskSize, memSize, padLen (u16), padding, data
    public const int MaxInlineValue = 61;

    /// <summary>Longest tag before its value or block data: word, name, indices, two 8-byte sizes, padLen.</summary>
    public const int MaxTagHead = TagWordSize + 255 + MaxIndices * IndexSize + 8 + 8 + 2;

    public const uint MagicNormal = 0xBED2BED2;   // CPTDUMP_MAGIC_NUMBER
    public const uint MagicPartial = 0xBED3BED3;  // partial checkpoint
    public const uint MagicRestored = 0xBAD1BAD1; // checkpoint already restored
    public const uint MagicNoRestore = 0xBAD2BAD2;// not to be restored
    public const uint MagicOld = 0xBED0BED0;      // old, 32-bit block sizes
    public const uint MagicVersion0 = 0xBED2BED0; // "version 0", 32-bit block sizes

    public const int PageSize = 4096;
    public const int PageShift = 12;

    /// <summary>The name of a magic value, or null when it is not a VMware checkpoint.</summary>
    public static string? MagicName(uint magic) => magic switch
    {
        MagicNormal => "normal",
        MagicPartial => "partial",
        MagicRestored => "restored",
        MagicNoRestore => "no-restore",
        MagicOld => "old (32-bit sizes)",
        MagicVersion0 => "version 0 (32-bit sizes)",
        _ => null,
    };

    /// <summary>Width of block size fields: the magic's low nibble is the storage version; 0 means 4-byte sizes.</summary>
    public static int SizeFieldWidth(uint magic) => (magic & 0xF) == 0 ? 4 : 8;
}
