using CloudMem.Engine.Core;
using System.Text;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using Iced.Intel;

namespace CloudMem.Engine.Linux;

/// <summary>A suspicious executable mapping (linux.malfind).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Comm">Process name.</param>
/// <param name="Start">First address of the mapping.</param>
/// <param name="End">Address after the mapping.</param>
/// <param name="Flags">Permissions as in /proc/PID/maps.</param>
/// <param name="Path">Mapped file, or empty for anonymous memory.</param>
/// <param name="Reason">Why it is reported (several reasons joined by "; ").</param>
/// <param name="Hexdump">The first 64 bytes, 16 per line with offsets and ASCII (empty when not readable).</param>
/// <param name="Disassembly">The first instructions (x86-64, Intel syntax), one per line.</param>
public sealed record LinuxMalfindRow(int Pid, string Comm, [property: Hex] ulong Start, [property: Hex] ulong End, string Flags, string Path, string Reason,
    IReadOnlyList<string> Hexdump, IReadOnlyList<string> Disassembly) : IRowDetail
{
    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public string DetailTitle => $"pid {Pid} {Comm} {Hex.Of(Start)}-{Hex.Of(End)} {Flags} {Path}";

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public IEnumerable<string> DetailLines => Hexdump.Count == 0 ? [] : Hexdump.Concat([""]).Concat(Disassembly);
}

/// <summary>
/// Finds executable memory a normal program does not have: anonymous executable mappings (injected or JIT code),
/// executable mappings of memfd or deleted files (fileless execution), and writable+executable mappings.
/// </summary>
public static class LinuxMalfind
{
    private const ulong VmWrite = 2, VmExec = 4;
    private const int DumpBytes = 64, Instructions = 8;

    /// <summary>Special mappings the kernel itself provides to every process (never suspicious by themselves).</summary>
    private static readonly HashSet<string> s_kernelMappings = ["[vdso]", "[vsyscall]", "[uprobes]", "[vvar]"];

    /// <summary>Why a mapping is suspicious, or null when it is not.</summary>
    public static string? Classify(ulong vmFlags, bool anonymous, string path)
    {
        if ((vmFlags & VmExec) == 0)
        {
            return null;
        }
        var reasons = new List<string>();
        if (anonymous && !s_kernelMappings.Contains(path))
        {
            reasons.Add("executable anonymous memory");
        }
        if (!anonymous && path.StartsWith("/memfd:", StringComparison.Ordinal))
        {
            reasons.Add("executable memfd file (fileless)");
        }
        else if (!anonymous && path.EndsWith(" (deleted)", StringComparison.Ordinal))
        {
            reasons.Add("executable deleted file");
        }
        if ((vmFlags & VmWrite) != 0)
        {
            reasons.Add("writable and executable");
        }
        return reasons.Count == 0 ? null : string.Join("; ", reasons);
    }

    /// <summary>linux.malfind: suspicious executable mappings of every user process (or of the given pids).</summary>
    public static RowsReport<LinuxMalfindRow> Run(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, pids, ct);
        var rows = new List<LinuxMalfindRow>();
        var spaces = new Dictionary<int, AddressSpace?>();
        List<LinuxProcess>? processes = null;
        foreach (LinuxMapping map in maps)
        {
            ct.ThrowIfCancellationRequested();
            string? reason = Classify(map.VmFlags, map.Anonymous, map.Path);
            if (reason is null)
            {
                continue;
            }
            if (!spaces.TryGetValue(map.Pid, out AddressSpace? space))
            {
                processes ??= LinuxProcesses.List(context, ct).Processes;     // one task-list walk for every pid
                space = UserSpace(context, processes, map.Pid);
                spaces[map.Pid] = space;
            }
            byte[] head = new byte[(int)Math.Min((ulong)DumpBytes, map.End - map.Start)];
            int got = space?.Read(map.Start, head) ?? 0;
            if (got == 0)
            {
                notes.Add($"pid {map.Pid} 0x{map.Start:X}: the first page is not in the capture (not yet touched or swapped out)");
            }
            rows.Add(new LinuxMalfindRow(map.Pid, map.Comm, map.Start, map.End, map.Flags, map.Path, reason,
                CodeView.HexLines(head.AsSpan(0, got), map.Start), CodeView.Disassemble(head.AsSpan(0, got), map.Start, Instructions)));
        }
        return new RowsReport<LinuxMalfindRow>("linux.malfind", rows, notes);
    }

    /// <summary>The user address space of a process, or null when its mm cannot be read.</summary>
    internal static AddressSpace? UserSpace(LinuxContext context, int pid, CancellationToken ct)
        => UserSpace(context, LinuxProcesses.List(context, ct).Processes, pid);

    /// <summary>The user address space of <paramref name="pid"/> among already listed <paramref name="processes"/>.</summary>
    internal static AddressSpace? UserSpace(LinuxContext context, IEnumerable<LinuxProcess> processes, int pid)
    {
        LinuxProcess? process = processes.FirstOrDefault(p => p.Pid == pid && p.Mm != 0);
        return process is not null && context.Profile.MmPgd >= 0
            && context.Kernel.Kernel.TryReadUInt64(process.Mm + (ulong)context.Profile.MmPgd, out ulong pgd) && pgd != 0
            ? context.ProcessSpace(pgd) : null;
    }

    /// <summary>
    /// Calls <paramref name="scan"/> with each readable mapping of each process in <paramref name="maps"/> and the
    /// process's address space, for content scans (linux.secrets, linux.yarascan); <paramref name="scan"/> returns the
    /// bytes it could read. A process whose page tables cannot be read, and mappings past
    /// <see cref="AnalysisLimits.MaxSecretScanBytes"/> read bytes of one process, become notes.
    /// </summary>
    internal static void ScanReadableMappings(LinuxContext context, List<LinuxMapping> maps, List<string> notes, Func<AddressSpace, LinuxMapping, ulong> scan, CancellationToken ct)
    {
        List<LinuxProcess> processes = LinuxProcesses.List(context, ct).Processes;
        ulong maxBytes = AnalysisLimits.Default.MaxSecretScanBytes;
        foreach (IGrouping<int, LinuxMapping> process in maps.GroupBy(m => m.Pid))
        {
            AddressSpace? space = UserSpace(context, processes, process.Key);
            if (space is null)
            {
                notes.Add($"pid {process.Key}: the page tables cannot be read: not scanned");
                continue;
            }
            ulong scanned = 0;
            foreach (LinuxMapping map in process.Where(m => (m.VmFlags & 1) != 0)) // readable by the process
            {
                if (scanned > maxBytes)
                {
                    notes.Add($"pid {process.Key}: more than {maxBytes} bytes of mappings: the rest is not scanned");
                    break;
                }
                scanned += scan(space, map);
            }
        }
    }
}
