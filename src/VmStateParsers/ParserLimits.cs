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

    /// <summary>Largest physical address space (bytes) a capture may describe: 2^52, the x86-64 MAXPHYADDR.</summary>
    public ulong MaxPhysicalAddress { get; init; } = 1UL << 52;

    /// <summary>Largest VMCOREINFO text, in bytes.</summary>
    public int MaxVmcoreInfoBytes { get; init; } = 1024 * 1024;

    /// <summary>Most group descriptors of a VMware checkpoint (.vmss/.vmsn); real files have about a hundred.</summary>
    public int MaxCheckpointGroups { get; init; } = 65536;

    /// <summary>Most tags walked in a VMware checkpoint, over all groups.</summary>
    public int MaxCheckpointTags { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most memory regions (regionsCount) of a VMware checkpoint; real VMs have one to a few.</summary>
    public int MaxMemoryRegions { get; init; } = 65536;

    /// <summary>Bytes of decoded units kept in the cache of a compressed capture.</summary>
    public int DecodeCacheBytes { get; init; } = 32 * 1024 * 1024;
}
