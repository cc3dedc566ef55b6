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
    /// <summary>Signature of a file header copy.</summary>
    public const uint HeaderSignature = 0x01282014;
    /// <summary>File offset of the first header copy.</summary>
    public const long HeaderCopy0 = 0x0000;
    /// <summary>File offset of the second header copy.</summary>
    public const long HeaderCopy1 = 0x1000;
    /// <summary>Header bytes covered by its checksum (46, checksum field zeroed).</summary>
    public const int HeaderSize = 0x2E;               // checksum covers these 46 bytes, checksum field zeroed
    /// <summary>Offset of the header signature (u32).</summary>
    public const int HeaderSignatureOffset = 0x00;    // u32
    /// <summary>Offset of the header CRC-32 (u32).</summary>
    public const int HeaderChecksumOffset = 0x04;     // u32 CRC-32
    /// <summary>Offset of the header sequence number (u16); the higher valid copy wins.</summary>
    public const int HeaderSequenceOffset = 0x08;     // u16
    /// <summary>Offset of the format version (u32, (major &lt;&lt; 8) | minor).</summary>
    public const int HeaderVersionOffset = 0x0A;      // u32 (major << 8) | minor
    /// <summary>Offset of the data version (u32).</summary>
    public const int HeaderDataVersionOffset = 0x0E;  // u32
    /// <summary>Offset of the header flags (u32).</summary>
    public const int HeaderFlagsOffset = 0x12;        // u32
    /// <summary>Offset of the data alignment in bytes (u32).</summary>
    public const int HeaderAlignmentOffset = 0x16;    // u32 DataAlignmentInBytes
    /// <summary>Offset of the replay log's file offset (u64).</summary>
    public const int HeaderReplayLogOffset = 0x1A;    // u64
    /// <summary>Offset of the replay log's size (u64).</summary>
    public const int HeaderReplayLogSize = 0x22;      // u64
    /// <summary>Offset of the replay log header's size (u32).</summary>
    public const int HeaderReplayLogHeaderSize = 0x2A; // u32
    /// <summary>The container format version this parser reads (4.0).</summary>
    public const uint CurrentVersion = 0x0400;
    /// <summary>Smallest data alignment accepted.</summary>
    public const uint MinAlignment = 0x1000;
    /// <summary>Largest data alignment accepted.</summary>
    public const uint MaxAlignment = 0x10000;

    // Replay log header (0x22 bytes; checksum over them with the field zeroed). Field meanings after
    // EntryCount are not documented; the maximum entry count is what Microsoft's loader checks.
    /// <summary>Signature of the replay log header.</summary>
    public const uint ReplayLogSignature = 0x01110003;
    /// <summary>Size of the replay log header (its checksum covers it).</summary>
    public const int ReplayLogHeaderSize = 0x22;
    /// <summary>Offset of the replay log header CRC-32 (u32).</summary>
    public const int ReplayLogChecksumOffset = 0x04;  // u32
    /// <summary>Offset of the count of entries still to replay (u32).</summary>
    public const int ReplayLogEntryCountOffset = 0x08; // u32 entries still to replay
    /// <summary>Offset of the maximum entry count (u32).</summary>
    public const int ReplayLogMaxEntriesOffset = 0x0D; // u32
    /// <summary>Size of one replay log entry.</summary>
    public const int ReplayLogEntrySize = 0x1C;

    // Object table: header {u32 signature, u32 count}, then 18-byte entries. The root table is at 0x2000.
    /// <summary>Signature of an object table header.</summary>
    public const uint ObjectTableSignature = 0x01110001;
    /// <summary>File offset of the root object table.</summary>
    public const long RootObjectTable = 0x2000;
    /// <summary>Size of an object table header {u32 signature, u32 count}.</summary>
    public const int ObjectTableHeaderSize = 8;
    /// <summary>Offset of the object table signature (u32).</summary>
    public const int ObjectTableSignatureOffset = 0x00; // u32
    /// <summary>Offset of the object table's entry count (u32).</summary>
    public const int ObjectTableCountOffset = 0x04;     // u32 entries
    /// <summary>Size of one object table entry.</summary>
    public const int ObjectEntrySize = 18;
    /// <summary>Offset of an entry's object type (u8).</summary>
    public const int ObjectTypeOffset = 0x00;         // u8
    /// <summary>Offset of an entry's CRC-32 (u32, computed with the field zeroed).</summary>
    public const int ObjectChecksumOffset = 0x01;     // u32 CRC-32 of the entry, field zeroed
    /// <summary>Offset of the object's file offset (u64).</summary>
    public const int ObjectFileOffsetOffset = 0x05;   // u64
    /// <summary>Offset of the object's size (u32).</summary>
    public const int ObjectSizeOffset = 0x0D;         // u32
    /// <summary>Offset of the entry flags (u8, 1 = required/allocated).</summary>
    public const int ObjectFlagsOffset = 0x11;        // u8 (1 = required/allocated)
    /// <summary>Object type: unused entry.</summary>
    public const byte ObjectEmpty = 0;
    /// <summary>Object type: a further object table.</summary>
    public const byte ObjectTable = 1;
    /// <summary>Object type: a key table.</summary>
    public const byte ObjectKeyTable = 2;
    /// <summary>Object type: a file object (a large value stored out of line).</summary>
    public const byte ObjectFile = 3;
    /// <summary>Object type: free space.</summary>
    public const byte ObjectFree = 4;
    /// <summary>Object type: the replay log (seen in third-party parsers, not in Microsoft's description).</summary>
    public const byte ObjectReplayLog = 6;            // seen in dissect's enum, not in Microsoft's document
    /// <summary>Entries per object table as Hyper-V writes them: (0x1000 - 8) / 18.</summary>
    public const int ObjectEntriesPerTable = 227;

    // Key table: 10-byte header, then packed variable-size entries up to the end of the object.
    /// <summary>Signature of a key table header.</summary>
    public const ushort KeyTableSignature = 0x0002;
    /// <summary>Size of a key table header.</summary>
    public const int KeyTableHeaderSize = 10;
    /// <summary>Offset of the key table signature (u16).</summary>
    public const int KeyTableSignatureOffset = 0x00;  // u16
    /// <summary>Offset of the key table's 1-based index (u16).</summary>
    public const int KeyTableIndexOffset = 0x02;      // u16, 1-based
    /// <summary>Offset of the key table's sequence number (u16).</summary>
    public const int KeyTableSequenceOffset = 0x04;   // u16
    /// <summary>Offset of the key table header CRC-32 (u32, computed with the field zeroed).</summary>
    public const int KeyTableChecksumOffset = 0x06;   // u32 CRC-32 of the 10-byte header, field zeroed
    /// <summary>Size of a key table object as Hyper-V writes it.</summary>
    public const int DefaultKeyTableSize = 0x1000;

    // Key entry header (21 bytes), then the UTF-8 name (NameSize bytes incl. NUL), then the value.
    /// <summary>Size of a key entry header.</summary>
    public const int KeyHeaderSize = 21;
    /// <summary>Offset of the key's value type (u8).</summary>
    public const int KeyTypeOffset = 0x00;            // u8
    /// <summary>Offset of the key flags (u8).</summary>
    public const int KeyFlagsOffset = 0x01;           // u8
    /// <summary>Offset of the whole entry's size (u32).</summary>
    public const int KeySizeOffset = 0x02;            // u32 whole entry
    /// <summary>Offset of the parent's key table index (u16, 0 = child of the virtual root).</summary>
    public const int KeyParentTableOffset = 0x06;     // u16 (0 = child of the virtual root)
    /// <summary>Offset of the parent entry's offset in its key table object (u32).</summary>
    public const int KeyParentOffsetOffset = 0x08;    // u32 offset of the parent entry in its key table object
    /// <summary>Offset of the entry CRC-32 (u32, over header with the field zeroed, name and value).</summary>
    public const int KeyChecksumOffset = 0x0C;        // u32 CRC-32 of header (field zeroed) + name + value
    /// <summary>Offset of the 1-based order among siblings (u32).</summary>
    public const int KeyInsertionOffset = 0x10;       // u32 order among siblings (1-based)
    /// <summary>Offset of the name size in bytes, NUL included (u8).</summary>
    public const int KeyNameSizeOffset = 0x14;        // u8

    /// <summary>Key flag: the value is a pointer {u32 size, u64 file offset} to a file object.</summary>
    public const byte KeyFlagFileObject = 0x01;       // value is {u32 size, u64 file offset}
    /// <summary>Key flag: the key is a subcomponent.</summary>
    public const byte KeyFlagSubcomponent = 0x02;
    /// <summary>Key flag: the key tracks change sequence numbers.</summary>
    public const byte KeyFlagSequenceTracking = 0x04;
    /// <summary>Size of a file-object pointer value.</summary>
    public const int FileObjectPointerSize = 12;
    /// <summary>Offset of the file object's size in the pointer value (u32).</summary>
    public const int FileObjectSizeOffset = 0x0;      // u32, in the value
    /// <summary>Offset of the file object's file offset in the pointer value (u64).</summary>
    public const int FileObjectOffsetOffset = 0x4;    // u64 file offset, in the value
    /// <summary>Size of a node value {u64 change tracking sequence, u32 next insertion sequence}.</summary>
    public const int NodeDataSize = 12;               // {u64 change tracking sequence, u32 next insertion sequence}
    /// <summary>Offset of the next insertion sequence in a node value (u32).</summary>
    public const int NodeNextInsertionOffset = 0x8;   // u32, in the value
    /// <summary>Size of the u32 byte-count prefix of String and Array values.</summary>
    public const int ValueSizePrefix = 4;             // String and Array values: u32 byte size, then the bytes
    /// <summary>Values of this many bytes or more go to a file object.</summary>
    public const int FileObjectThreshold = 2048;

    // Saved-state keys.
    /// <summary>Name of the saved-state root node.</summary>
    public const string SavedStateNode = "savedstate";
    /// <summary>Path prefix of the saved-state keys.</summary>
    public const string SavedStatePath = "/" + SavedStateNode + "/";
    /// <summary>Key of the VM version (Int, (major &lt;&lt; 8) | minor).</summary>
    public const string VmVersionKey = SavedStatePath + "VmVersion";                  // Int, (major << 8) | minor
    /// <summary>Key of the configuration version (Int, (major &lt;&lt; 8) | minor).</summary>
    public const string ConfigurationVersionKey = "/configuration/properties/version"; // Int, the same
    /// <summary>Key of the processor state blob (Array, see HyperVPartitionState).</summary>
    public const string PartitionStateKey = SavedStatePath + "savedVM/partition_state"; // Array (HyperVPartitionState)
    /// <summary>Key of the processor state blob in older files.</summary>
    public const string LegacyPartitionStateKey = "/savedVM/partition_state";

    // Guest memory (version > 5.0 layout): SavedStatePath + prefix + decimal index.
    /// <summary>Key name prefix of the guest memory block descriptors (followed by a decimal index).</summary>
    public const string RamMemoryBlockPrefix = "RamMemoryBlock";
    /// <summary>Key name prefix of the guest memory data blocks (followed by a decimal index).</summary>
    public const string RamBlockPrefix = "RamBlock";
    /// <summary>Size of a memory block descriptor (MemoryBlockSaveStruct).</summary>
    public const int RamMemoryBlockSize = 48;         // MemoryBlockSaveStruct, 40 bytes of fields + 4 padding + 8
    /// <summary>Offset of the descriptor's saved-state version (u32).</summary>
    public const int MemoryBlockVersionOffset = 0x00; // u32 SavedStateVersion
    /// <summary>The descriptor version this parser reads.</summary>
    public const uint MemoryBlockVersion = 3;
    /// <summary>Offset of the descriptor flags (u32).</summary>
    public const int MemoryBlockFlagsOffset = 0x04;   // u32
    /// <summary>Offset of the block's page count (u64).</summary>
    public const int MemoryBlockPageCountOffset = 0x08; // u64
    /// <summary>Offset of the block's first page in the RamBlock sequence (u64).</summary>
    public const int MemoryBlockMbpStartOffset = 0x10;  // u64 first page in the RamBlock sequence
    /// <summary>Offset of the block's first guest page frame (u64).</summary>
    public const int MemoryBlockGpaStartOffset = 0x18;  // u64 first guest page frame
    /// <summary>Offset of the block's NUMA node (u32).</summary>
    public const int MemoryBlockNodeOffset = 0x20;      // u32 NUMA node
    /// <summary>Offset of the descriptor's KSR field (u64).</summary>
    public const int MemoryBlockKsrOffset = 0x28;       // u64
    /// <summary>Guest page size.</summary>
    public const int PageSize = 4096;
    /// <summary>Pages in one RamBlock value.</summary>
    public const int PagesPerRamBlock = 256;
    /// <summary>Bytes in one RamBlock value.</summary>
    public const int RamBlockSize = PageSize * PagesPerRamBlock;

    // Compressed RamBlock token stream [unverified: community reverse engineering, volatility3 PR #1969].
    /// <summary>Compressed RamBlock token: end of the stream.</summary>
    public const uint TokenEnd = 0xFFFFFFFF;
    /// <summary>Compressed RamBlock token: one page filled with a repeated value.</summary>
    public const uint TokenFillPage = 0xFFFFFFFE;
    /// <summary>Compressed RamBlock token: a run of filled pages.</summary>
    public const uint TokenFillRun = 0xFFFFFFFD;
    /// <summary>Compressed RamBlock token: pages stored as they are.</summary>
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
