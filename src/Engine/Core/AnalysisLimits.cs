namespace CloudMem.Engine.Core;

/// <summary>
/// Caps on every count an analysis reads from guest memory (list lengths, tree sizes, string and buffer lengths),
/// next to <see cref="VmStateParsers.ParserLimits"/> for the formats. A walk that reaches a cap stops with a note; it
/// never throws. One object so that a caller (analyze, a library user) can tighten or widen them in one place.
/// </summary>
public sealed record AnalysisLimits
{
    /// <summary>The limits every command uses.</summary>
    public static AnalysisLimits Default { get; } = new();

    /// <summary>Entries followed on any kernel list before it is declared broken (a generic ceiling).</summary>
    public int MaxListEntries { get; init; } = 1 << 20;

    /// <summary>Linux tasks on the task list.</summary>
    public int MaxTasks { get; init; } = 1 << 20;

    /// <summary>Windows processes on PsActiveProcessHead.</summary>
    public int MaxProcesses { get; init; } = 100_000;

    /// <summary>Threads of one process.</summary>
    public int MaxThreads { get; init; } = 65_536;

    /// <summary>Kernel modules (PsLoadedModuleList, the Linux module list).</summary>
    public int MaxKernelModules { get; init; } = 65_536;

    /// <summary>User-mode modules on one process's loader lists.</summary>
    public int MaxProcessModules { get; init; } = 4096;

    /// <summary>VADs of one process; also memory mappings (VMAs) of a Linux process.</summary>
    public int MaxVads { get; init; } = 100_000;

    /// <summary>Depth of a VAD/rb tree walk.</summary>
    public int MaxTreeDepth { get; init; } = 64;

    /// <summary>SIDs of one token.</summary>
    public int MaxSids { get; init; } = 1024;

    /// <summary>Bytes of one process environment block.</summary>
    public int MaxEnvironmentBytes { get; init; } = 1 << 20;

    /// <summary>Slots of one system-call table (x86-64 has about 450).</summary>
    public int MaxSyscallTableEntries { get; init; } = 1024;

    /// <summary>Bytes of one process's mappings that a content scan (linux.secrets) reads.</summary>
    public ulong MaxSecretScanBytes { get; init; } = 4UL << 30;

    /// <summary>Results of one physical-memory scan (pool tags, task_structs).</summary>
    public int MaxScanResults { get; init; } = 100_000;

    /// <summary>Candidates a physical-memory task_struct scan keeps before it stops (linux.psscan; cheap checks only).</summary>
    public int MaxTaskCandidates { get; init; } = 1 << 18;

    /// <summary>Largest task_struct accepted from the type information (a hostile --isf cannot make a scan read past it).</summary>
    public int MaxTaskStructBytes { get; init; } = 64 * 1024;

    /// <summary>Open file descriptors read from one process's fd table.</summary>
    public int MaxFileDescriptors { get; init; } = 1 << 20;

    /// <summary>Bytes of one process's command line (mm->arg_start..arg_end).</summary>
    public int MaxCommandLineBytes { get; init; } = 1 << 20;

    /// <summary>Heap bytes scanned per process for bash history.</summary>
    public long MaxHeapBytes { get; init; } = 256L << 20;

    /// <summary>Longest bash history line read.</summary>
    public int MaxHistoryLineBytes { get; init; } = 4096;

    /// <summary>Largest printk descriptor ring accepted, as log2 of the descriptor count (count_bits).</summary>
    public int MaxPrintkCountBits { get; init; } = 22;

    /// <summary>Largest printk text data ring accepted, as log2 of its bytes (size_bits).</summary>
    public int MaxPrintkSizeBits { get; init; } = 28;

    /// <summary>Largest mapping or rebuilt executable one dump writes (larger ones are skipped with a note).</summary>
    public ulong MaxDumpBytes { get; init; } = 1UL << 30;

    /// <summary>Hives on CmpHiveListHead.</summary>
    public int MaxHives { get; init; } = 4096;

    /// <summary>Subkeys of one registry key, values of one key, and entries of one subkey index (lf/lh/li/ri).</summary>
    public int MaxKeyEntries { get; init; } = 65_536;

    /// <summary>Depth of a registry key path and of nested ri subkey indexes.</summary>
    public int MaxKeyDepth { get; init; } = 512;

    /// <summary>Entries of a system service table (KiServiceLimit; Windows 11 has about 500).</summary>
    public int MaxServiceTableEntries { get; init; } = 4096;

    /// <summary>Service control manager records read (windows.svcscan; a system has a few hundred).</summary>
    public int MaxServiceRecords { get; init; } = 65_536;
}
