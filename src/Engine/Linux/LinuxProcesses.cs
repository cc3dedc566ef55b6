using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;

namespace CloudMem.Engine.Linux;

/// <summary>One process (thread-group leader) on the kernel's task list.</summary>
/// <param name="Offset">Virtual address of its task_struct.</param>
/// <param name="Pid">Process id (tgid) in the initial pid namespace.</param>
/// <param name="Ppid">Parent's process id (real_parent's tgid).</param>
/// <param name="Comm">task_struct.comm (at most 15 characters; a process can change it).</param>
/// <param name="Uid">Real user id, or null when the cred could not be read.</param>
/// <param name="Gid">Real group id.</param>
/// <param name="Euid">Effective user id.</param>
/// <param name="KernelThread">PF_KTHREAD is set.</param>
/// <param name="Threads">signal->nr_threads, when available.</param>
/// <param name="NamespacePid">The pid inside the process's own pid namespace, when it differs.</param>
/// <param name="StartSeconds">Start time in seconds after boot.</param>
/// <param name="Doubt">Why this row may be wrong (a smeared or damaged list), or null.</param>
public sealed record LinuxProcess(
    [property: Hex] ulong Offset, int Pid, int Ppid, string Comm, uint? Uid, uint? Gid, uint? Euid, bool KernelThread, int? Threads,
    int? NamespacePid, double? StartSeconds, string? Doubt)
{
    /// <summary>task_struct.mm (0 for kernel threads).</summary>
    internal ulong Mm { get; init; }
}

/// <summary>Walks the kernel's process list (init_task.tasks) with <see cref="KernelLists"/> (cycles, bad pointers and the
/// limit end the walk with a note: smear tolerance).</summary>
public static class LinuxProcesses
{
    private const uint PfKthread = 0x00200000;

    /// <summary>The processes on the task list, in list order, and notes about anything doubtful.</summary>
    public static (List<LinuxProcess> Processes, List<string> Notes) List(LinuxContext context, CancellationToken cancellationToken = default)
    {
        LinuxProfile p = context.Profile;
        IVirtualMemory kernel = context.Kernel.Kernel;
        var notes = new List<string>();
        var result = new List<LinuxProcess>();
        if (!context.Kernel.Symbols.TryGetAddress("init_task", out ulong initTask))
        {
            notes.Add("init_task is not in kallsyms: the task list cannot be walked");
            return (result, notes);
        }
        // init_task.tasks is the head and init_task (the idle task) the first process.
        byte[] buffer = new byte[p.TaskSize];
        foreach (ulong link in context.WalkList(initTask + (ulong)p.TaskTasks, "task list (init_task.tasks)", "tasks",
            AnalysisLimits.Default.MaxTasks, notes, cancellationToken, headIsEntry: true))
        {
            ulong task = link - (ulong)p.TaskTasks;
            if (kernel.Read(task, buffer) != buffer.Length)
            {
                notes.Add($"task_struct at 0x{task:X} is not readable: skipped");
                continue;
            }
            LinuxProcess? process = Decode(context, task, buffer);
            if (process is not null)
            {
                result.Add(process);
            }
            else
            {
                notes.Add($"task_struct at 0x{task:X} does not look like a task (bad pid or comm): skipped");
            }
        }
        return (result, notes);
    }

    /// <summary>Reads one task_struct's fields; null when the bytes do not look like a task.</summary>
    internal static LinuxProcess? Decode(LinuxContext context, ulong address, ReadOnlySpan<byte> task)
    {
        LinuxProfile p = context.Profile;
        IVirtualMemory kernel = context.Kernel.Kernel;
        int tgid = BinaryPrimitives.ReadInt32LittleEndian(task[p.TaskTgid..]);
        int pid = BinaryPrimitives.ReadInt32LittleEndian(task[p.TaskPid..]);
        if (tgid < 0 || tgid > 4 * 1024 * 1024 || pid < 0 || pid > 4 * 1024 * 1024)
        {
            return null;
        }
        string comm = Comm(task.Slice(p.TaskComm, 16));
        string? doubt = null;
        ulong parent = BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskRealParent..]);
        int ppid = 0;
        if (address != parent && kernel.TryReadUInt32(parent + (ulong)p.TaskTgid, out uint parentTgid))
        {
            ppid = (int)parentTgid;
        }
        else if (address != parent)
        {
            doubt = $"real_parent 0x{parent:X} unreadable";
        }
        if (tgid == 0)
        {
            ppid = 0;
        }
        uint? uid = null, gid = null, euid = null;
        if (p.TaskCred >= 0)
        {
            ulong cred = BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskCred..]);
            Span<byte> c = stackalloc byte[4];
            uid = p.CredUid >= 0 && kernel.Read(cred + (ulong)p.CredUid, c) == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(c) : null;
            gid = p.CredGid >= 0 && kernel.Read(cred + (ulong)p.CredGid, c) == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(c) : null;
            euid = p.CredEuid >= 0 && kernel.Read(cred + (ulong)p.CredEuid, c) == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(c) : null;
        }
        uint flags = p.TaskFlags >= 0 ? BinaryPrimitives.ReadUInt32LittleEndian(task[p.TaskFlags..]) : 0;
        ulong mm = p.TaskMm >= 0 ? BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskMm..]) : 0;
        int? threads = null;
        if (p.TaskSignal >= 0 && p.SignalNrThreads >= 0)
        {
            ulong signal = BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskSignal..]);
            if (kernel.TryReadUInt32(signal + (ulong)p.SignalNrThreads, out uint n))
            {
                threads = (int)n;
            }
        }
        int? nsPid = null;
        if (p.TaskThreadPid >= 0 && p.PidLevel >= 0 && p.PidNumbers >= 0 && p.UpidSize > 0 && p.UpidNr >= 0)
        {
            ulong pidStruct = BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskThreadPid..]);
            if (kernel.TryReadUInt32(pidStruct + (ulong)p.PidLevel, out uint level) && level > 0 && level < 32
                && kernel.TryReadUInt32(pidStruct + (ulong)p.PidNumbers + level * (ulong)p.UpidSize + (ulong)p.UpidNr, out uint inner))
            {
                nsPid = (int)inner;
            }
        }
        double? start = p.TaskStartTime >= 0 ? BinaryPrimitives.ReadUInt64LittleEndian(task[p.TaskStartTime..]) / 1e9 : null;
        return new LinuxProcess(address, tgid, ppid, comm, uid, gid, euid, (flags & PfKthread) != 0, threads, nsPid,
            start is null ? null : Math.Round(start.Value, 3), doubt)
        {
            Mm = mm,
        };
    }

    /// <summary>The process's command line (argv joined by spaces) from mm->arg_start..arg_end in its own address space.</summary>
    public static string? CommandLine(LinuxContext context, LinuxProcess process, int? maxBytes = null)
    {
        LinuxProfile p = context.Profile;
        if (process.Mm == 0 || p.MmArgStart < 0 || p.MmArgEnd < 0 || p.MmPgd < 0)
        {
            return null;
        }
        IVirtualMemory kernel = context.Kernel.Kernel;
        if (!kernel.TryReadUInt64(process.Mm + (ulong)p.MmArgStart, out ulong start)
            || !kernel.TryReadUInt64(process.Mm + (ulong)p.MmArgEnd, out ulong end)
            || !kernel.TryReadUInt64(process.Mm + (ulong)p.MmPgd, out ulong pgd)
            || end <= start)
        {
            return null;
        }
        AddressSpace user = context.ProcessSpace(pgd);
        byte[] args = new byte[(int)Math.Min((ulong)(maxBytes ?? AnalysisLimits.Default.MaxCommandLineBytes), end - start)];
        int got = user.Read(start, args);
        if (got == 0)
        {
            return null;
        }
        ReadOnlySpan<byte> span = args.AsSpan(0, got);
        span = span.TrimEnd((byte)0);
        var text = new StringBuilder(span.Length);
        foreach (byte b in span)
        {
            text.Append(b == 0 ? ' ' : (char)b);
        }
        return text.ToString();
    }

    private static string Comm(ReadOnlySpan<byte> bytes)
    {
        int nul = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul >= 0 ? bytes[..nul] : bytes);
    }
}
