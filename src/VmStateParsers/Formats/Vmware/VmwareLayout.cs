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

    // Tag word (u16): bits 15..8 name length, 7..6 index count, 5..0 value size (62/63: block). A zero word ends a group.
    public const int TagWordSize = 2;
    public const int TagValueSizeMask = 0x3F;
    public const int TagIndexCountShift = 6;
    public const int TagIndexCountMask = 0x3;
    public const int TagNameLengthShift = 8;
    public const int IndexSize = 4;               // each index is a u32
    public const int MaxIndices = 3;
    public const int BlockCompressed = 62;        // block whose data is compressed (undocumented codec)
    public const int Block = 63;                  // block: diskSize, memSize, padLen (u16), padding, data
    public const int BlockPadLengthSize = 2;      // u16 padLen
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

    // Groups and tags that hold guest memory and processor state.
    public const string CheckpointGroup = "Checkpoint";
    public const string MemSizeTag = "memSize";             // u32 MiB of guest memory
    public const string MemoryGroup = "memory";
    public const string RegionsCountTag = "regionsCount";   // u32; none: one linear region from 0
    public const string RegionPpnTag = "regionPPN";         // [i] u32 first guest page
    public const string RegionPageNumTag = "regionPageNum"; // [i] u32 first page in the memory store
    public const string RegionSizeTag = "regionSize";       // [i] u32 pages
    public const string MemoryBlockTag = "Memory";          // [0][0] block: the inline memory store
    public const string CpuGroup = "cpu";
    public const string NumVcpusTag = "cpu:numVCPUs";       // u32
    public const string Cr64Tag = "CR64";                   // [cpu][n] u64 CRn (older files: "CR")
    public const string CompanionExtension = ".vmem";       // the memory store beside the state file

    /// <summary>64-bit general-purpose registers, as tags [cpu] named like this (rip included).</summary>
    public static readonly string[] Gprs64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"];

    /// <summary>Further register tags [cpu] the reader takes (32-bit guests and flags).</summary>
    public static readonly string[] OtherRegisters = ["eflags", "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip"];

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
