using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>A task_struct found by scanning physical memory (linux.psscan).</summary>
/// <param name="Offset">Direct-map virtual address of the task_struct (physical + page_offset_base).</param>
/// <param name="PhysicalOffset">Physical address of the task_struct.</param>
/// <param name="Pid">task_struct.pid (the thread id).</param>
/// <param name="Tgid">task_struct.tgid (the process id; equal to Pid for a thread-group leader).</param>
/// <param name="Ppid">real_parent's tgid.</param>
/// <param name="Comm">task_struct.comm.</param>
/// <param name="Uid">Real uid from the cred, or null when unreadable (a freed task's cred may be gone).</param>
/// <param name="State">"listed" (on the pslist walk), "thread" (a thread of a listed process; threads are never on the
/// task list), "hidden" (not on the list, not exiting, and still attached to its struct pid: a live task unlinked to
/// hide it), or "exited/unlinked" (not on the list: a zombie, a dead task whose memory remains).</param>
/// <param name="ExitState">task_struct.exit_state decoded (EXIT_ZOMBIE, EXIT_DEAD), or null when 0.</param>
/// <param name="OnTaskList">The same physical task_struct was reached by the task-list walk.</param>
/// <param name="Linked">tasks.next->prev and tasks.prev->next both point back at this task (its list entry is live).</param>
/// <param name="NamespacePid">The pid inside the task's own pid namespace, when it is not the initial one.</param>
/// <param name="InPidTable">thread_pid->tasks[PIDTYPE_PID] leads back to this task (what pid lookups such as kill() and
/// /proc find), null when the types lack thread_pid/pid_links/pid.tasks.</param>
public sealed record LinuxScannedTask(
    [property: Hex] ulong Offset, [property: Hex] ulong PhysicalOffset, int Pid, int Tgid, int Ppid, string Comm, uint? Uid, string State, string? ExitState,
    bool OnTaskList, bool Linked, int? NamespacePid, bool? InPidTable);

/// <summary>
/// Finds task_structs by scanning all of physical memory, independently of the task list, and compares with it.
/// Candidates pass cheap structural checks first (pid/tgid range, comm shape, kernel pointers), then a strong one:
/// real_parent must point to something that itself looks like a task.
/// </summary>
public static class LinuxPsScan
{
    private const int MaxPid = 4 * 1024 * 1024;
    private const int Step = 64; // task_struct objects are L1_CACHE_BYTES-aligned (slab and init_task)
    private const int BlockSize = 4 << 20;
    private const ulong Poison1 = 0xDEAD000000000100;
    private const ulong Poison2 = 0xDEAD000000000122;
    private const uint ExitZombie = 0x20;
    private const uint ExitDead = 0x10;

    /// <summary>linux.psscan.</summary>
    public static RowsReport<LinuxScannedTask> PsScan(LinuxContext context, CancellationToken ct = default, IProgressSink? progress = null)
    {
        (List<LinuxScannedTask> rows, List<string> notes) = Scan(context, ct, progress);
        return new RowsReport<LinuxScannedTask>("linux.psscan", rows, notes);
    }

    /// <summary>The scan's rows in physical order, and notes.</summary>
    /// <param name="context">The located kernel and types.</param>
    /// <param name="ct">Cancellation.</param>
    /// <param name="progress">Progress sink, or null.</param>
    /// <param name="degreeOfParallelism">Scan threads; null for the default (the rows do not depend on it).</param>
    public static (List<LinuxScannedTask> Tasks, List<string> Notes) Scan(LinuxContext context, CancellationToken ct = default, IProgressSink? progress = null,
        int? degreeOfParallelism = null)
    {
        LinuxProfile p = context.Profile;
        IVirtualMemory kernel = context.Kernel.Kernel;
        IPhysicalMemory physical = context.Physical;
        var notes = new List<string>();
        (List<LinuxProcess> listed, List<string> listNotes) = LinuxProcesses.List(context, ct);
        notes.AddRange(listNotes.Select(n => "task list: " + n));
        var listedPhysical = new HashSet<ulong>();
        foreach (LinuxProcess process in listed)
        {
            if (kernel.TryTranslate(process.Offset, out Translation t, out _))
            {
                listedPhysical.Add(t.PhysicalAddress);
            }
        }
        var listedTgids = listed.Select(x => x.Pid).ToHashSet();

        if (!Checker.FitsInTask(context, out string? why))
        {
            notes.Add(why!);
            return ([], notes);
        }
        var checker = new Checker(context);
        var found = new List<(ulong Pa, byte[] Bytes)>();
        int maxResults = AnalysisLimits.Default.MaxTaskCandidates;
        int window = p.TaskSize;
        // Adjacent runs are joined (a task_struct may straddle them); blocks run in parallel, candidates come in address order.
        foreach ((ulong Pa, byte[] Bytes) candidate in ParallelScan.Blocks<(ulong Pa, byte[] Bytes)>(physical, BlockSize, window,
            (in ScanBlock block, ReadOnlySpan<byte> data, List<(ulong Pa, byte[] Bytes)> hits) =>
            {
                int limit = Math.Min(data.Length - window + 1, block.Owned);
                for (int off = 0; off < limit; off += Step)
                {
                    ReadOnlySpan<byte> bytes = data.Slice(off, window);
                    if (checker.Cheap(bytes))
                    {
                        hits.Add((block.PhysicalAddress + (ulong)off, bytes.ToArray()));
                    }
                }
            }, coalesce: true, degreeOfParallelism, progress is null ? null : (done, total) => progress.Report("task_struct scan", done, total), ct))
        {
            found.Add(candidate);
            if (found.Count > maxResults)
            {
                notes.Add($"more than {maxResults} candidates: the scan stopped at physical 0x{candidate.Pa:X}");
                break;
            }
        }
        ulong pageOffset = context.Kernel.PageOffsetBase;
        var rows = new List<LinuxScannedTask>();
        foreach ((ulong pa, byte[] bytes) in found)
        {
            if (!checker.Strong(bytes, out int ppid))
            {
                continue;
            }
            int pid = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(p.TaskPid));
            int tgid = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(p.TaskTgid));
            bool onList = listedPhysical.Contains(pa);
            uint exit = p.TaskExitState >= 0 ? BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(p.TaskExitState)) : 0;
            string? exitState = exit switch
            {
                0 => null,
                ExitZombie => "EXIT_ZOMBIE",
                ExitDead => "EXIT_DEAD",
                _ => $"0x{exit:X}",
            };
            bool? inPidTable = checker.InPidTable(pa, bytes);
            string state = onList ? "listed"
                : pid != tgid && exit == 0 && listedTgids.Contains(tgid) ? "thread"
                : exit == 0 && inPidTable == true ? "hidden"
                : "exited/unlinked";
            rows.Add(new LinuxScannedTask(pa + pageOffset, pa, pid, tgid, ppid, Comm(bytes.AsSpan(p.TaskComm, 16)),
                checker.Uid(bytes), state, exitState, onList, checker.Linked(pa, bytes),
                LinuxProcesses.Decode(context, pa + pageOffset, bytes)?.NamespacePid, inPidTable));
        }
        var scanned = rows.Where(r => r.OnTaskList).Select(r => r.PhysicalOffset).ToHashSet();
        foreach (LinuxProcess missing in listed.Where(x => kernel.TryTranslate(x.Offset, out Translation t, out _) && !scanned.Contains(t.PhysicalAddress)))
        {
            notes.Add($"pid {missing.Pid} ({missing.Comm}) at 0x{missing.Offset:X} is on the task list but the scan did not recognise it");
        }
        return (rows, notes);
    }

    internal static string Comm(ReadOnlySpan<byte> bytes)
    {
        int nul = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? bytes[..nul] : bytes);
    }

    /// <summary>comm: 1..15 bytes that are not control characters, then NUL padding to 16.</summary>
    internal static bool IsComm(ReadOnlySpan<byte> comm)
    {
        int i = 0;
        while (i < 16 && comm[i] != 0)
        {
            if (comm[i] < 0x20 || comm[i] == 0x7F)
            {
                return false;
            }
            i++;
        }
        if (i == 0 || i == 16)
        {
            return false;
        }
        for (; i < 16; i++)
        {
            if (comm[i] != 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The structural checks, with offsets from the type model and address ranges of this kernel.</summary>
    private sealed class Checker
    {
        private readonly LinuxProfile _p;
        private readonly IVirtualMemory _kernel;
        private readonly ulong _directStart;
        private readonly ulong _directEnd;
        private readonly int _parent;
        private readonly int _realCred;
        private readonly int _stack;
        private readonly int _pidLinks;
        private readonly int _pidTasks;

        public Checker(LinuxContext context)
        {
            _p = context.Profile;
            _kernel = context.Kernel.Kernel;
            _directStart = context.Kernel.PageOffsetBase;
            _directEnd = _directStart + Math.Max(context.Physical.MaxAddress, 1UL << 32);
            _parent = context.Types.TryGetOffset("task_struct", "parent", out int parent) ? parent : -1;
            _realCred = context.Types.TryGetOffset("task_struct", "real_cred", out int realCred) ? realCred : -1;
            _stack = context.Types.TryGetOffset("task_struct", "stack", out int stack) ? stack : -1;
            _pidLinks = context.Types.TryGetOffset("task_struct", "pid_links", out int links) ? links : -1;
            _pidTasks = context.Types.TryGetOffset("pid", "tasks", out int tasks) ? tasks : -1;
        }

        /// <summary>The task's struct pid (thread_pid) still lists it first under PIDTYPE_PID (hlist_head.first ==
        /// &amp;pid_links[0]); exit's detach_pid removes it. Null when the types lack a field.</summary>
        public bool? InPidTable(ulong pa, byte[] task)
        {
            if (_p.TaskThreadPid < 0 || _pidLinks < 0 || _pidTasks < 0)
            {
                return null;
            }
            ulong pid = U64(task, _p.TaskThreadPid);
            return pid != 0 && _kernel.TryReadUInt64(pid + (ulong)_pidTasks, out ulong first) && PointsAt(first, pa + (ulong)_pidLinks);
        }

        /// <summary>Every field the scan reads lies inside task_struct (a hostile --isf cannot make it read past a candidate).</summary>
        public static bool FitsInTask(LinuxContext context, out string? why)
        {
            LinuxProfile p = context.Profile;
            int Field(string name) => context.Types.TryGetOffset("task_struct", name, out int offset) ? offset : -1;
            var fields = new (int Offset, int Width)[]
            {
                (p.TaskPid, 4), (p.TaskTgid, 4), (p.TaskComm, 16), (p.TaskTasks, 16), (p.TaskRealParent, 8), (Field("parent"), 8),
                (p.TaskCred, 8), (Field("real_cred"), 8), (Field("stack"), 8), (p.TaskExitState, 4), (p.TaskFlags, 4), (p.TaskMm, 8),
                (p.TaskSignal, 8), (p.TaskThreadPid, 8), (p.TaskStartTime, 8), (Field("pid_links"), 16),
            };
            int end = fields.Where(f => f.Offset >= 0).Max(f => f.Offset + f.Width);
            int maxTaskSize = AnalysisLimits.Default.MaxTaskStructBytes;
            if (p.TaskSize <= 0 || p.TaskSize > maxTaskSize || end > p.TaskSize)
            {
                why = $"task_struct size {p.TaskSize} does not hold its fields (last ends at {end}) or exceeds {maxTaskSize}: the type information is unusable for a scan";
                return false;
            }
            why = null;
            return true;
        }

        private static ulong U64(ReadOnlySpan<byte> task, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(task[offset..]);

        private static bool IsKernelPointer(ulong va) => va >= 0xFFFF800000000000 && (va & 7) == 0;

        private bool IsDataPointer(ulong va) =>
            (va & 7) == 0 && ((va >= _directStart && va < _directEnd) || va >= LinuxKernel.StartKernelMap);

        private bool IsDataPointerOrNull(ulong va) => va == 0 || IsDataPointer(va);

        private static bool IsListPointer(ulong va) => IsKernelPointer(va) || va == Poison1 || va == Poison2;

        public bool Cheap(ReadOnlySpan<byte> task)
        {
            int pid = BinaryPrimitives.ReadInt32LittleEndian(task[_p.TaskPid..]);
            if (pid < 0 || pid > MaxPid)
            {
                return false;
            }
            int tgid = BinaryPrimitives.ReadInt32LittleEndian(task[_p.TaskTgid..]);
            if (tgid < 0 || tgid > pid || (tgid == 0 && pid != 0))
            {
                return false;
            }
            if (!IsComm(task.Slice(_p.TaskComm, 16)))
            {
                return false;
            }
            if (!IsListPointer(U64(task, _p.TaskTasks)) || !IsListPointer(U64(task, _p.TaskTasks + 8)))
            {
                return false;
            }
            if (!IsKernelPointer(U64(task, _p.TaskRealParent)) || (_parent >= 0 && !IsKernelPointer(U64(task, _parent))))
            {
                return false;
            }
            // A task freed after exit has cred and real_cred set to NULL (exit_creds); a live one points at a cred.
            if ((_p.TaskCred >= 0 && !IsDataPointerOrNull(U64(task, _p.TaskCred))) || (_realCred >= 0 && !IsDataPointerOrNull(U64(task, _realCred))))
            {
                return false;
            }
            if (_stack >= 0)
            {
                // A freed task's stack pointer is NULL; a live one is a page-aligned vmalloc (or direct-map) address.
                ulong stack = U64(task, _stack);
                if (stack != 0 && (!IsKernelPointer(stack) || (stack & 0xFFF) != 0))
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>real_parent must lead to a task-shaped structure (itself, for the idle task).</summary>
        public bool Strong(byte[] task, out int ppid)
        {
            ppid = 0;
            ulong parent = U64(task, _p.TaskRealParent);
            int tgid = BinaryPrimitives.ReadInt32LittleEndian(task.AsSpan(_p.TaskTgid));
            if (tgid == 0)
            {
                // The idle tasks (swapper/N) are their own parents, or children of init_task.
                return Comm(task.AsSpan(_p.TaskComm, 16)).StartsWith("swapper", StringComparison.Ordinal);
            }
            Span<byte> comm = stackalloc byte[16];
            if (!_kernel.TryReadUInt32(parent + (ulong)_p.TaskTgid, out uint parentTgid) || parentTgid > MaxPid
                || !_kernel.TryReadUInt32(parent + (ulong)_p.TaskPid, out uint parentPid) || parentTgid > parentPid
                || _kernel.Read(parent + (ulong)_p.TaskComm, comm) != 16 || !IsComm(comm))
            {
                return false;
            }
            ppid = (int)parentTgid;
            return true;
        }

        /// <summary>Both neighbours point back at this entry (compared physically: init_task is reached through the
        /// kernel image mapping, slab tasks through the direct map).</summary>
        public bool Linked(ulong pa, byte[] task)
        {
            ulong self = pa + (ulong)_p.TaskTasks;
            ulong next = U64(task, _p.TaskTasks);
            ulong prev = U64(task, _p.TaskTasks + 8);
            return _kernel.TryReadUInt64(next + 8, out ulong nextPrev) && PointsAt(nextPrev, self)
                && _kernel.TryReadUInt64(prev, out ulong prevNext) && PointsAt(prevNext, self);
        }

        private bool PointsAt(ulong va, ulong pa) => _kernel.TryTranslate(va, out Translation t, out _) && t.PhysicalAddress == pa;

        public uint? Uid(byte[] task)
        {
            if (_p.TaskCred < 0 || _p.CredUid < 0)
            {
                return null;
            }
            ulong cred = U64(task, _p.TaskCred);
            return cred != 0 && _kernel.TryReadUInt32(cred + (ulong)_p.CredUid, out uint uid) ? uid : null;
        }
    }
}
