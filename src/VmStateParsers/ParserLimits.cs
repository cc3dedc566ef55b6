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

    /// <summary>Most compression sets in a hibernation file (real files: about one per 16 pages in use).</summary>
    public int MaxHibernationSets { get; init; } = 64 * 1024 * 1024;

    /// <summary>Most pages one hibernation compression set may hold (Windows writes at most 16).</summary>
    public int MaxHibernationSetPages { get; init; } = 256;

    /// <summary>Most pages a hibernation restoration set may declare (NumPagesForLoader, KernelPagesProcessed): 2^30 pages = 4 TiB.</summary>
    public ulong MaxHibernationPages { get; init; } = 1UL << 30;

    /// <summary>Bytes of decoded units kept in the cache of a compressed capture.</summary>
    public int DecodeCacheBytes { get; init; } = 32 * 1024 * 1024;
}
