namespace CloudMem.VmStateParsers;

/// <summary>
/// Caps on every count a parser reads from a file, checked before anything is allocated.
/// The defaults accept any real capture up to several TiB; tests lower them to prove each check.
/// </summary>
public sealed record ParserLimits
{
    /// <summary>The defaults.</summary>
    public static ParserLimits Default { get; } = new();

    /// <summary>Most runs one capture may produce (makedumpfile with excluded pages fragments memory).</summary>
    public int MaxRuns { get; init; } = 8 * 1024 * 1024;

    /// <summary>Most ELF program headers.</summary>
    public int MaxProgramHeaders { get; init; } = 1 << 20;

    /// <summary>Most bytes of ELF notes (all PT_NOTE segments, or a kdump note blob).</summary>
    public int MaxNoteBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most notes parsed.</summary>
    public int MaxNotes { get; init; } = 65536;

    /// <summary>Most CPUs whose state is kept.</summary>
    public int MaxCpus { get; init; } = 8192;

    /// <summary>Most LiME/AVML records.</summary>
    public int MaxRecords { get; init; } = 4 * 1024 * 1024;

    /// <summary>Most Snappy chunks indexed in an AVML file.</summary>
    public int MaxSnappyChunks { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most records of a flattened makedumpfile stream.</summary>
    public int MaxFlattenedRecords { get; init; } = 128 * 1024 * 1024;

    /// <summary>Most runs in a crash dump's PHYSICAL_MEMORY_DESCRIPTOR (its 700-byte buffer holds 43 64-bit or 86 32-bit runs).</summary>
    public int MaxCrashDumpRuns { get; init; } = 128;

    /// <summary>Most pages (bits) a crash dump's SDMP/FDMP bitmap may cover: 2^40, i.e. 4 PiB of 4 KiB pages.</summary>
    public ulong MaxCrashDumpBitmapPages { get; init; } = 1UL << 40;

    /// <summary>Most pages a Linux hibernation image may declare (swsusp_info.pages: header, PFN list and data pages).</summary>
    public long MaxSwsuspPages { get; init; } = 1L << 32;

    /// <summary>Most swap_map_page pages followed in a Linux hibernation image's map chain.</summary>
    public int MaxSwsuspMapPages { get; init; } = 1 << 24;

    /// <summary>Most compressed chunks indexed in a Linux hibernation image.</summary>
    public int MaxSwsuspChunks { get; init; } = 1 << 27;

    /// <summary>Largest physical address space (bytes) a capture may describe: 2^52, the x86-64 MAXPHYADDR.</summary>
    public ulong MaxPhysicalAddress { get; init; } = 1UL << 52;

    /// <summary>Largest VMCOREINFO text, in bytes.</summary>
    public int MaxVmcoreInfoBytes { get; init; } = 1024 * 1024;

    /// <summary>Most compression sets in a hibernation file (real files: about one per 16 pages in use).</summary>
    public int MaxHibernationSets { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most pages one hibernation compression set may hold (Windows writes at most 16).</summary>
    public int MaxHibernationSetPages { get; init; } = 256;

    /// <summary>Most pages a hibernation restoration set may declare (NumPagesForLoader, KernelPagesProcessed): 2^30 pages = 4 TiB.</summary>
    public ulong MaxHibernationPages { get; init; } = 1UL << 30;

    /// <summary>Most group descriptors of a VMware checkpoint (.vmss/.vmsn); real files have about a hundred.</summary>
    public int MaxCheckpointGroups { get; init; } = 65536;

    /// <summary>Most tags walked in a VMware checkpoint, over all groups.</summary>
    public int MaxCheckpointTags { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most memory regions (regionsCount) of a VMware checkpoint; real VMs have one to a few.</summary>
    public int MaxMemoryRegions { get; init; } = 65536;

    /// <summary>Bytes of decoded units kept in the cache of a compressed capture.</summary>
    public int DecodeCacheBytes { get; init; } = 32 * 1024 * 1024;

    /// <summary>Largest BTF blob (header and all sections), in bytes.</summary>
    public int MaxBtfBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most types one symbol source may define (BTF type records, ISF base, user and enum types).</summary>
    public int MaxTypes { get; init; } = 1 << 21;

    /// <summary>Most members of one struct, union or enum, or parameters of one function (BTF vlen is 16 bits).</summary>
    public int MaxTypeMembers { get; init; } = 65535;

    /// <summary>Longest type, member or symbol name, in bytes.</summary>
    public int MaxNameLength { get; init; } = 4096;

    /// <summary>Deepest chain followed when resolving a type (typedefs, qualifiers, nested arrays, ISF type descriptors).</summary>
    public int MaxTypeDepth { get; init; } = 64;

    /// <summary>Largest ISF JSON document (after decompression), in bytes.</summary>
    public long MaxIsfBytes { get; init; } = 1L << 30;

    /// <summary>Most symbols in one ISF file.</summary>
    public int MaxSymbols { get; init; } = 8 * 1024 * 1024;

    /// <summary>Largest PDB file, in bytes (Windows kernel PDBs are tens of MiB).</summary>
    public long MaxPdbBytes { get; init; } = 1L << 30;

    /// <summary>Most streams in a PDB's stream directory (one per compiland plus a few dozen; kernels have a few thousand).</summary>
    public int MaxPdbStreams { get; init; } = 1 << 20;

    /// <summary>Most object-table entries of a Hyper-V storage container (one per key table and per file object,
    /// e.g. per 1 MiB RAM block: 16 Mi entries cover 16 TiB).</summary>
    public int MaxHyperVObjects { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most object tables (and replay logs) of a Hyper-V storage container.</summary>
    public int MaxHyperVObjectTables { get; init; } = 256 * 1024;

    /// <summary>Most keys of a Hyper-V storage container.</summary>
    public int MaxHyperVKeys { get; init; } = 32 * 1024 * 1024;

    /// <summary>Deepest nesting of Hyper-V keys (real files use fewer than 10 levels).</summary>
    public int MaxHyperVKeyDepth { get; init; } = 256;

    /// <summary>Largest Hyper-V key table object, in bytes (Hyper-V writes 4 KiB tables).</summary>
    public int MaxHyperVKeyTableBytes { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most uncommitted entries a Hyper-V replay log may declare.</summary>
    public int MaxHyperVReplayLogEntries { get; init; } = 1024 * 1024;
}
