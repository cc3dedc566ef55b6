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

    /// <summary>Bytes of decoded units kept in the cache of a compressed capture.</summary>
    public int DecodeCacheBytes { get; init; } = 32 * 1024 * 1024;
}
