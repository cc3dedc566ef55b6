namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// On-disk layout of the Hyper-V storage container ("HyperVStorage": .vmrs, .vmcx, .vsv). Little-endian, packed.
/// Source: Microsoft's description (microsoft/openvmm vm/hv1/hvs_file/FORMAT.md, MIT), checked against two real
/// files (a runtime-state .VMRS and a .vmcx): every header, object-table entry, key-table header, replay-log header
/// and key-entry checksum of both verifies with the definitions below.
/// </summary>
public static class HyperVLayout
{
    // File header: two copies, at 0 and 0x1000; the valid one with the higher sequence wins.
    public const uint HeaderSignature = 0x01282014;
    public const long HeaderCopy0 = 0x0000;
    public const long HeaderCopy1 = 0x1000;
    public const int HeaderSize = 0x2E;               // checksum covers these 46 bytes, checksum field zeroed
    public const int HeaderSignatureOffset = 0x00;    // u32
    public const int HeaderChecksumOffset = 0x04;     // u32 CRC-32
    public const int HeaderSequenceOffset = 0x08;     // u16
    public const int HeaderVersionOffset = 0x0A;      // u32 (major << 8) | minor
    public const int HeaderDataVersionOffset = 0x0E;  // u32
    public const int HeaderFlagsOffset = 0x12;        // u32
    public const int HeaderAlignmentOffset = 0x16;    // u32 DataAlignmentInBytes
    public const int HeaderReplayLogOffset = 0x1A;    // u64
    public const int HeaderReplayLogSize = 0x22;      // u64
    public const int HeaderReplayLogHeaderSize = 0x2A; // u32
    public const uint CurrentVersion = 0x0400;
    public const uint MinAlignment = 0x1000;
    public const uint MaxAlignment = 0x10000;

    // Replay log header (0x22 bytes; checksum over them with the field zeroed). Field meanings after
    // EntryCount are not documented; the maximum entry count is what Microsoft's loader checks.
    public const uint ReplayLogSignature = 0x01110003;
    public const int ReplayLogHeaderSize = 0x22;
    public const int ReplayLogChecksumOffset = 0x04;  // u32
    public const int ReplayLogEntryCountOffset = 0x08; // u32 entries still to replay
    public const int ReplayLogMaxEntriesOffset = 0x0D; // u32
    public const int ReplayLogEntrySize = 0x1C;

    // Object table: header {u32 signature, u32 count}, then 18-byte entries. The root table is at 0x2000.
    public const uint ObjectTableSignature = 0x01110001;
    public const long RootObjectTable = 0x2000;
    public const int ObjectTableHeaderSize = 8;
    public const int ObjectTableSignatureOffset = 0x00; // u32
    public const int ObjectTableCountOffset = 0x04;     // u32 entries
    public const int ObjectEntrySize = 18;
    public const int ObjectTypeOffset = 0x00;         // u8
    public const int ObjectChecksumOffset = 0x01;     // u32 CRC-32 of the entry, field zeroed
    public const int ObjectFileOffsetOffset = 0x05;   // u64
    public const int ObjectSizeOffset = 0x0D;         // u32
    public const int ObjectFlagsOffset = 0x11;        // u8 (1 = required/allocated)
    public const byte ObjectEmpty = 0;
    public const byte ObjectTable = 1;
    public const byte ObjectKeyTable = 2;
    public const byte ObjectFile = 3;
    public const byte ObjectFree = 4;
    public const byte ObjectReplayLog = 6;            // seen in dissect's enum, not in Microsoft's document
    /// <summary>Entries per object table as Hyper-V writes them: (0x1000 - 8) / 18.</summary>
    public const int ObjectEntriesPerTable = 227;

    // Key table: 10-byte header, then packed variable-size entries up to the end of the object.
    public const ushort KeyTableSignature = 0x0002;
    public const int KeyTableHeaderSize = 10;
    public const int KeyTableSignatureOffset = 0x00;  // u16
    public const int KeyTableIndexOffset = 0x02;      // u16, 1-based
    public const int KeyTableSequenceOffset = 0x04;   // u16
    public const int KeyTableChecksumOffset = 0x06;   // u32 CRC-32 of the 10-byte header, field zeroed
    public const int DefaultKeyTableSize = 0x1000;

    // Key entry header (21 bytes), then the UTF-8 name (NameSize bytes incl. NUL), then the value.
    public const int KeyHeaderSize = 21;
    public const int KeyTypeOffset = 0x00;            // u8
    public const int KeyFlagsOffset = 0x01;           // u8
    public const int KeySizeOffset = 0x02;            // u32 whole entry
    public const int KeyParentTableOffset = 0x06;     // u16 (0 = child of the virtual root)
    public const int KeyParentOffsetOffset = 0x08;    // u32 offset of the parent entry in its key table object
    public const int KeyChecksumOffset = 0x0C;        // u32 CRC-32 of header (field zeroed) + name + value
    public const int KeyInsertionOffset = 0x10;       // u32 order among siblings (1-based)
    public const int KeyNameSizeOffset = 0x14;        // u8

    public const byte KeyFlagFileObject = 0x01;       // value is {u32 size, u64 file offset}
    public const byte KeyFlagSubcomponent = 0x02;
    public const byte KeyFlagSequenceTracking = 0x04;
    public const int FileObjectPointerSize = 12;
    public const int FileObjectSizeOffset = 0x0;      // u32, in the value
    public const int FileObjectOffsetOffset = 0x4;    // u64 file offset, in the value
    public const int NodeDataSize = 12;               // {u64 change tracking sequence, u32 next insertion sequence}
    public const int NodeNextInsertionOffset = 0x8;   // u32, in the value
    public const int ValueSizePrefix = 4;             // String and Array values: u32 byte size, then the bytes
    /// <summary>Values of this many bytes or more go to a file object.</summary>
    public const int FileObjectThreshold = 2048;

    // Saved-state keys.
    public const string SavedStateNode = "savedstate";
    public const string SavedStatePath = "/" + SavedStateNode + "/";
    public const string VmVersionKey = SavedStatePath + "VmVersion";                  // Int, (major << 8) | minor
    public const string ConfigurationVersionKey = "/configuration/properties/version"; // Int, the same
    public const string PartitionStateKey = SavedStatePath + "savedVM/partition_state"; // Array (HyperVPartitionState)
    public const string LegacyPartitionStateKey = "/savedVM/partition_state";

    // Guest memory (version > 5.0 layout): SavedStatePath + prefix + decimal index.
    public const string RamMemoryBlockPrefix = "RamMemoryBlock";
    public const string RamBlockPrefix = "RamBlock";
    public const int RamMemoryBlockSize = 48;         // MemoryBlockSaveStruct, 40 bytes of fields + 4 padding + 8
    public const int MemoryBlockVersionOffset = 0x00; // u32 SavedStateVersion
    public const uint MemoryBlockVersion = 3;
    public const int MemoryBlockFlagsOffset = 0x04;   // u32
    public const int MemoryBlockPageCountOffset = 0x08; // u64
    public const int MemoryBlockMbpStartOffset = 0x10;  // u64 first page in the RamBlock sequence
    public const int MemoryBlockGpaStartOffset = 0x18;  // u64 first guest page frame
    public const int MemoryBlockNodeOffset = 0x20;      // u32 NUMA node
    public const int MemoryBlockKsrOffset = 0x28;       // u64
    public const int PageSize = 4096;
    public const int PagesPerRamBlock = 256;
    public const int RamBlockSize = PageSize * PagesPerRamBlock;

    // Compressed RamBlock token stream [unverified: community reverse engineering, volatility3 PR #1969].
    public const uint TokenEnd = 0xFFFFFFFF;
    public const uint TokenFillPage = 0xFFFFFFFE;
    public const uint TokenFillRun = 0xFFFFFFFD;
    public const uint TokenExplicit = 0xFFFFFFFC;
}

/// <summary>Key value types of the container.</summary>
public enum HyperVKeyType : byte
{
    /// <summary>Free space inside a key table.</summary>
    Free = 1,
    /// <summary>Signed 64-bit integer.</summary>
    Int = 3,
    /// <summary>Unsigned 64-bit integer.</summary>
    UInt = 4,
    /// <summary>IEEE double.</summary>
    Double = 5,
    /// <summary>UTF-16LE string with a u32 byte-size prefix.</summary>
    String = 6,
    /// <summary>Bytes with a u32 size prefix.</summary>
    Array = 7,
    /// <summary>32-bit boolean.</summary>
    Bool = 8,
    /// <summary>A node: has children.</summary>
    Node = 9,
}
