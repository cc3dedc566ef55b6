namespace CloudMem.VmStateParsers.Formats.CrashDump;

/// <summary>
/// Windows kernel crash dump headers (formats.md section 3), little-endian. Fields Windows does not use are filled
/// with the ASCII pattern "PAGE" repeated.
/// </summary>
internal static class CrashDumpLayout
{
    public const int PageSize = 4096;
    public const uint Signature = 0x45474150;         // "PAGE"
    public const uint ValidDump64 = 0x34365544;       // "DU64"
    public const uint ValidDump32 = 0x504D5544;       // "DUMP"
    public const uint FillPattern32 = Signature;      // what unused u32 fields hold
    public const ulong FillPattern64 = 0x4547415045474150;

    public const int SignatureOffset = 0x00;          // u32 "PAGE"
    public const int ValidDumpOffset = 0x04;          // u32 "DU64" or "DUMP"
    public const int MajorVersionOffset = 0x08;       // u32 0xF free build, 0xC checked
    public const int MinorVersionOffset = 0x0C;       // u32 NT build number
    public const uint MajorVersionFree = 0xF;         // free (retail) build
    public const uint MajorVersionChecked = 0xC;      // checked (debug) build
    public const int CommentSize = 128;               // ASCII, NUL-terminated
    public const int BugCheckParameterCount = 4;

    // IMAGE_FILE_MACHINE values of MachineImageType.
    public const uint MachineX86 = 0x014C;
    public const uint MachineAmd64 = 0x8664;
    public const uint MachineArm64 = 0xAA64;
    public const uint MachineArm = 0x01C4;

    // DUMP_TYPE values (see DumpTypeName).
    public const uint DumpTypeFull = 1;
    public const uint DumpTypeBitmapFull = 5;

    /// <summary>DUMP_HEADER64 (0x2000 bytes).</summary>
    internal static class H64
    {
        public const int Size = 0x2000;
        public const int DirectoryTableBase = 0x010;   // u64
        public const int PfnDataBase = 0x018;          // u64
        public const int PsLoadedModuleList = 0x020;   // u64
        public const int PsActiveProcessHead = 0x028;  // u64
        public const int MachineImageType = 0x030;     // u32
        public const int NumberProcessors = 0x034;     // u32
        public const int BugCheckCode = 0x038;         // u32, then 4 bytes of padding
        public const int BugCheckParameters = 0x040;   // u64[BugCheckParameterCount]
        public const int VersionUser = 0x060;          // 32 bytes
        public const int KdDebuggerDataBlock = 0x080;  // u64
        public const int PhysicalMemoryBlock = 0x088;  // PHYSICAL_MEMORY_DESCRIPTOR64, 700-byte buffer
        public const int PhysicalMemoryBlockSize = ContextRecord - PhysicalMemoryBlock;
        public const int ContextRecord = 0x348;        // 3000 bytes (x64 CONTEXT)
        public const int Exception = 0xF00;            // EXCEPTION_RECORD64 (0x98 bytes)
        public const int DumpType = 0xF98;             // u32, then 4 bytes of padding
        public const int RequiredDumpSpace = 0xFA0;    // u64
        public const int SystemTime = 0xFA8;           // u64 FILETIME
        public const int Comment = 0xFB0;              // 128 bytes
        public const int SystemUpTime = 0x1030;        // u64

        // PHYSICAL_MEMORY_DESCRIPTOR64 (relative to PhysicalMemoryBlock).
        public const int NumberOfRuns = 0x00;          // u32, then 4 bytes of padding
        public const int NumberOfPages = 0x08;         // u64
        public const int Runs = 0x10;                  // { u64 BasePage; u64 PageCount }[NumberOfRuns]
        public const int RunSize = 16;
        public const int RunBasePage = 0x0;            // u64, relative to a run
        public const int RunPageCount = 0x8;           // u64
        public const int RunsInBuffer = (PhysicalMemoryBlockSize - Runs) / RunSize;   // 43
    }

    /// <summary>32-bit DUMP_HEADER (0x1000 bytes).</summary>
    internal static class H32
    {
        public const int Size = 0x1000;
        public const int DirectoryTableBase = 0x010;   // u32
        public const int PfnDataBase = 0x014;          // u32
        public const int PsLoadedModuleList = 0x018;   // u32
        public const int PsActiveProcessHead = 0x01C;  // u32
        public const int MachineImageType = 0x020;     // u32
        public const int NumberProcessors = 0x024;     // u32
        public const int BugCheckCode = 0x028;         // u32
        public const int BugCheckParameters = 0x02C;   // u32[BugCheckParameterCount]
        public const int VersionUser = 0x03C;          // 32 bytes
        public const int PaeEnabled = 0x05C;           // u8
        public const int KdSecondaryVersion = 0x05D;   // u8
        public const int KdDebuggerDataBlock = 0x060;  // u32
        public const int PhysicalMemoryBlock = 0x064;  // PHYSICAL_MEMORY_DESCRIPTOR, 700-byte buffer
        public const int PhysicalMemoryBlockSize = ContextRecord - PhysicalMemoryBlock;
        public const int ContextRecord = 0x320;        // 1200 bytes (x86 CONTEXT)
        public const int Exception = 0x7D0;            // EXCEPTION_RECORD32 (0x50 bytes)
        public const int Comment = 0x820;              // 128 bytes
        public const int DumpType = 0xF88;             // u32
        public const int RequiredDumpSpace = 0xFA0;    // u64
        public const int SystemUpTime = 0xFB8;         // u64
        public const int SystemTime = 0xFC0;           // u64 FILETIME

        // PHYSICAL_MEMORY_DESCRIPTOR (relative to PhysicalMemoryBlock).
        public const int NumberOfRuns = 0x00;          // u32
        public const int NumberOfPages = 0x04;         // u32
        public const int Runs = 0x08;                  // { u32 BasePage; u32 PageCount }[NumberOfRuns]
        public const int RunSize = 8;
        public const int RunBasePage = 0x0;            // u32, relative to a run
        public const int RunPageCount = 0x4;           // u32
        public const int RunsInBuffer = (PhysicalMemoryBlockSize - Runs) / RunSize;   // 86
    }

    /// <summary>
    /// The fields both header widths carry, and where: one reader reads both through this. Pointer-sized fields
    /// (DirectoryTableBase, module and process lists, bug-check parameters, KdDebuggerDataBlock, run BasePage and
    /// PageCount, NumberOfPages) are u64 in DUMP_HEADER64 and u32 in DUMP_HEADER.
    /// </summary>
    internal sealed record HeaderShape(
        string Structure, string SignatureText, int Size, int PointerSize,
        int DirectoryTableBase, int PfnDataBase, int PsLoadedModuleList, int PsActiveProcessHead,
        int MachineImageType, int NumberProcessors, int BugCheckCode, int BugCheckParameters, int KdDebuggerDataBlock,
        int PhysicalMemoryBlock, int NumberOfPages, int Runs, int RunSize, int RunPageCount, int RunsInBuffer,
        int DumpType, int RequiredDumpSpace, int SystemTime, int Comment)
    {
        public bool Is64 => PointerSize == 8;

        public static readonly HeaderShape Dump64 = new("DUMP_HEADER64", "PAGEDU64", H64.Size, 8,
            H64.DirectoryTableBase, H64.PfnDataBase, H64.PsLoadedModuleList, H64.PsActiveProcessHead,
            H64.MachineImageType, H64.NumberProcessors, H64.BugCheckCode, H64.BugCheckParameters, H64.KdDebuggerDataBlock,
            H64.PhysicalMemoryBlock, H64.NumberOfPages, H64.Runs, H64.RunSize, H64.RunPageCount, H64.RunsInBuffer,
            H64.DumpType, H64.RequiredDumpSpace, H64.SystemTime, H64.Comment);

        public static readonly HeaderShape Dump32 = new("DUMP_HEADER", "PAGEDUMP", H32.Size, 4,
            H32.DirectoryTableBase, H32.PfnDataBase, H32.PsLoadedModuleList, H32.PsActiveProcessHead,
            H32.MachineImageType, H32.NumberProcessors, H32.BugCheckCode, H32.BugCheckParameters, H32.KdDebuggerDataBlock,
            H32.PhysicalMemoryBlock, H32.NumberOfPages, H32.Runs, H32.RunSize, H32.RunPageCount, H32.RunsInBuffer,
            H32.DumpType, H32.RequiredDumpSpace, H32.SystemTime, H32.Comment);
    }

    /// <summary>The bitmap header of dump types 2, 5, 6 and 7, right after the main header.</summary>
    internal static class Bitmap
    {
        public const uint SummarySignature = 0x504D4453;   // "SDMP"
        public const uint FullSignature = 0x504D4446;      // "FDMP"
        public const uint ValidDump = 0x504D5544;          // "DUMP"
        public const uint RangeSignature = 0x504D4452;     // "RDMP" (types 8..0xA, not supported)

        public const int SignatureOffset = 0x00;           // u32
        public const int ValidDumpOffset = 0x04;           // u32
        public const int DumpOptions = 0x08;               // u32, then 0x14 reserved bytes
        public const int FirstPage = 0x20;                 // u64 absolute file offset of the first stored page
        public const int TotalPresentPages = 0x28;         // u64 set bits
        public const int Pages = 0x30;                     // u64 bits in the bitmap (PFNs covered)
        public const int Bits = 0x38;                      // bit i (LSB first) set: PFN i is stored
        public const int HeaderSize = Bits;
    }

    /// <summary>DUMP_TYPE values.</summary>
    public static string DumpTypeName(uint type) => type switch
    {
        1 => "full",
        2 => "summary (kernel bitmap)",
        3 => "header only",
        4 => "triage (minidump)",
        5 => "bitmap full",
        6 => "bitmap kernel",
        7 => "automatic",
        8 => "kernel memory (RDMP)",
        9 => "kernel and user memory (RDMP)",
        10 => "complete memory (RDMP)",
        _ => "unknown",
    };

    /// <summary>IMAGE_FILE_MACHINE values a crash dump header may carry.</summary>
    public static string MachineName(uint machine) => machine switch
    {
        MachineX86 => "x86",
        MachineAmd64 => "x64",
        MachineArm64 => "ARM64",
        MachineArm => "ARM",
        _ => "unknown",
    };
}
