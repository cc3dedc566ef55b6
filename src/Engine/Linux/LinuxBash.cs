using System.Buffers.Binary;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>One command of a bash history found in memory (linux.bash).</summary>
/// <param name="Pid">Process id of the shell.</param>
/// <param name="Comm">Its task_struct.comm.</param>
/// <param name="Time">When the command was entered (from its "#SECONDS" history timestamp), or null when the seconds
/// are past year 9999.</param>
/// <param name="UnixTime">The same as seconds since 1970.</param>
/// <param name="Command">The command line as bash stored it.</param>
/// <param name="Entry">User-space address of the _hist_entry.</param>
public sealed record LinuxBashCommand(int Pid, string Comm, DateTimeOffset? Time, long UnixTime, string Command, [property: Hex] ulong Entry);

/// <summary>
/// Bash command history recovered from the heap of shell processes. Bash keeps its history as an array of
/// <c>HIST_ENTRY</c> (readline's <c>struct _hist_entry { char *line; char *timestamp; histdata_t data; }</c>),
/// and with history timestamps on (always, for entries read from or written to a HISTTIMEFORMAT history) each
/// timestamp is a heap string "#" followed by the seconds since 1970. The heap ([heap], the brk area) is scanned for
/// such strings, then for 8-byte-aligned pointers to them: each one is the timestamp field of a _hist_entry whose
/// line field points at the command.
/// </summary>
/// <remarks>
/// The _hist_entry layout is bash's (readline's history.h), not the kernel's, so it is not in the BTF: the two
/// pointer fields are at offsets 0 and 8 on x86-64. Entries whose timestamp is not "#" and at least 9 digits, or
/// whose line is empty or unreadable, are ignored. A history without timestamps (bash never saw HISTTIMEFORMAT and
/// its history file had none) is not found this way.
/// </remarks>
public static class LinuxBash
{
    /// <summary>Process names scanned when no pids are given (bash run as sh keeps the name sh).</summary>
    public static readonly IReadOnlySet<string> ShellNames = new HashSet<string>(StringComparer.Ordinal) { "bash", "sh" };

    private const int LineOffset = 0;
    private const int TimestampOffset = 8;
    private const int MinDigits = 9;
    private const int MaxDigits = 12;
    private const int PageSize = 4096;

    /// <summary>The history entries of shell processes (comm bash or sh), or of the given pids whatever their name,
    /// oldest first per process, and notes.</summary>
    public static (List<LinuxBashCommand> Commands, List<string> Notes) List(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        var rows = new List<LinuxBashCommand>();
        LinuxProfile p = context.Profile;
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context, ct);
        var targets = processes.Where(x => x.Mm != 0 && !x.KernelThread && (pids is null ? ShellNames.Contains(x.Comm) : pids.Contains(x.Pid))).ToList();
        if (targets.Count == 0)
        {
            notes.Add(pids is null
                ? "no bash history: no user process named bash or sh on the task list"
                : $"no bash history: none of the pids {string.Join(", ", pids.Order())} is a user process on the task list");
            return (rows, notes);
        }
        if (p.MmPgd < 0)
        {
            notes.Add($"the type information ({context.Types.Source}) lacks mm_struct.pgd");
            return (rows, notes);
        }
        (List<LinuxMapping> maps, List<string> mapNotes) = LinuxMaps.List(context, targets.Select(t => t.Pid).ToHashSet(), ct);
        notes.AddRange(mapNotes.Where(n => !notes.Contains(n)));
        IVirtualMemory k = context.Kernel.Kernel;
        foreach (LinuxProcess process in targets)
        {
            ct.ThrowIfCancellationRequested();
            if (!k.TryReadUInt64(process.Mm + (ulong)p.MmPgd, out ulong pgd))
            {
                notes.Add($"pid {process.Pid}: mm_struct at 0x{process.Mm:X} is not readable");
                continue;
            }
            AddressSpace user = context.ProcessSpace(pgd);
            var found = new List<LinuxBashCommand>();
            List<LinuxMapping> heaps = [.. maps.Where(m => m.Pid == process.Pid && m.Path == "[heap]")];
            if (heaps.Count == 0)
            {
                notes.Add($"pid {process.Pid} ({process.Comm}): no [heap] mapping found: its history cannot be searched");
                continue;
            }
            int readable = 0;
            foreach (LinuxMapping heap in heaps)
            {
                readable += ScanHeap(user, process, heap.Start, heap.End, found, notes, ct);
            }
            if (readable == 0)
            {
                notes.Add($"pid {process.Pid} ({process.Comm}): no heap page is in the capture: its history cannot be read");
            }
            else if (found.Count == 0)
            {
                notes.Add($"pid {process.Pid} ({process.Comm}): no timestamped history entries on its heap (a shell without history, or history kept without timestamps)");
            }
            rows.AddRange(found.OrderBy(r => r.UnixTime).ThenBy(r => r.Entry));
        }
        return (rows, notes);
    }

    /// <summary>linux.bash.</summary>
    public static RowsReport<LinuxBashCommand> Bash(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxBashCommand> rows, List<string> notes) = List(context, pids, ct);
        return new RowsReport<LinuxBashCommand>("linux.bash", rows, notes);
    }

    /// <summary>Adds the history entries found in one heap mapping to <paramref name="found"/>; returns how many of its
    /// pages were readable.</summary>
    private static int ScanHeap(AddressSpace user, LinuxProcess process, ulong start, ulong end, List<LinuxBashCommand> found, List<string> notes, CancellationToken ct)
    {
        if (end <= start)
        {
            return 0;
        }
        long maxHeapBytes = AnalysisLimits.Default.MaxHeapBytes;
        if (end - start > (ulong)maxHeapBytes)
        {
            notes.Add($"pid {process.Pid}: heap 0x{start:X}..0x{end:X} is larger than {maxHeapBytes >> 20} MiB: only the first part is scanned");
            end = start + (ulong)maxHeapBytes;
        }
        byte[] heap = new byte[(int)(end - start)];
        var resident = new bool[heap.Length / PageSize + 1];
        int missing = 0;
        for (int at = 0; at < heap.Length; at += PageSize)
        {
            int length = Math.Min(PageSize, heap.Length - at);
            resident[at / PageSize] = user.Read(start + (ulong)at, heap.AsSpan(at, length)) == length;
            missing += resident[at / PageSize] ? 0 : 1;
        }
        if (missing > 0)
        {
            notes.Add($"pid {process.Pid}: {missing} of {resident.Length - 1} heap pages are not in the capture (never touched, or swapped out)");
        }
        ct.ThrowIfCancellationRequested();

        // 1. Timestamp strings: '#', 9 to 12 digits, NUL.
        var stamps = new Dictionary<ulong, long>();
        for (int i = heap.AsSpan().IndexOf((byte)'#'); i >= 0;)
        {
            int digits = 0;
            long seconds = 0;
            while (i + 1 + digits < heap.Length && digits <= MaxDigits && heap[i + 1 + digits] is >= (byte)'0' and <= (byte)'9')
            {
                seconds = seconds * 10 + (heap[i + 1 + digits] - '0');
                digits++;
            }
            if (digits is >= MinDigits and <= MaxDigits && i + 1 + digits < heap.Length && heap[i + 1 + digits] == 0)
            {
                stamps[start + (ulong)i] = seconds;
            }
            int next = heap.AsSpan(i + 1).IndexOf((byte)'#');
            i = next < 0 ? -1 : i + 1 + next;
        }
        int readable = resident.Length - 1 - missing;
        if (stamps.Count == 0)
        {
            return readable;
        }

        // 2. Aligned pointers to them: the timestamp field of a _hist_entry.
        for (int at = TimestampOffset; at + 8 <= heap.Length; at += 8)
        {
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(heap.AsSpan(at));
            if (!stamps.TryGetValue(value, out long seconds) || !resident[at / PageSize])
            {
                continue;
            }
            ulong entry = start + (ulong)(at - TimestampOffset);
            ulong linePointer = BinaryPrimitives.ReadUInt64LittleEndian(heap.AsSpan(at - TimestampOffset + LineOffset));
            if (linePointer == 0 || linePointer == value)
            {
                continue;
            }
            string? line = user.ReadCString(linePointer, AnalysisLimits.Default.MaxHistoryLineBytes);
            if (string.IsNullOrEmpty(line) || line.Any(c => c < ' ' && c != '\t' && c != '\n'))
            {
                continue;
            }
            DateTimeOffset? time = seconds <= 253402300799 ? DateTimeOffset.FromUnixTimeSeconds(seconds) : null;
            found.Add(new LinuxBashCommand(process.Pid, process.Comm, time, seconds, line, entry));
        }
        return readable;
    }
}
