using System.Globalization;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>windows.threads: one _ETHREAD on a process's ThreadListHead.</summary>
/// <param name="Offset">Virtual address of the _ETHREAD, hex.</param>
/// <param name="Pid">Cid.UniqueProcess.</param>
/// <param name="Tid">Cid.UniqueThread.</param>
/// <param name="StartAddress">_ETHREAD.StartAddress, hex (for user threads Windows puts ntdll!RtlUserThreadStart here).</param>
/// <param name="StartModule">The loaded module holding StartAddress (from the process's loader lists; the kernel image for kernel addresses), or null.</param>
/// <param name="Win32StartAddress">_ETHREAD.Win32StartAddress, hex: where the thread really starts.</param>
/// <param name="Win32StartModule">The loaded module holding Win32StartAddress, or null.</param>
/// <param name="CreateTime">ISO 8601 UTC, or null when zero.</param>
/// <param name="ExitTime">ISO 8601 UTC, or null when zero (running).</param>
/// <param name="Suspicious">Set when a user-mode start address lies in no loaded module (code in private memory: the injected-thread sign).</param>
public sealed record WindowsThread(string Offset, long Pid, long Tid, string StartAddress, string? StartModule, string Win32StartAddress,
    string? Win32StartModule, string? CreateTime, string? ExitTime, string? Suspicious)
{
    /// <summary>The _ETHREAD address as a number.</summary>
    internal ulong Address { get; init; }

    internal ulong Start { get; init; }

    internal ulong Win32Start { get; init; }

    internal DateTime? CreateTimeUtc { get; init; }
}

/// <summary>Threads of a process: _EPROCESS.ThreadListHead walked through _ETHREAD.ThreadListEntry (bounded, cycle-checked).</summary>
public static class WindowsThreads
{
    /// <summary>Cap on threads followed per process.</summary>
    public const int MaxThreads = 65_536;

    /// <summary>Highest user-mode address (canonical lower half).</summary>
    private const ulong UserLimit = 0x0000_7FFF_FFFF_FFFF;

    /// <summary>Name given to start addresses in the kernel image.</summary>
    public const string KernelImageName = "ntoskrnl.exe";

    /// <summary>The threads of one process with their start addresses resolved against its loader lists.</summary>
    public static (List<WindowsThread> Threads, List<string> Notes) List(WindowsKernel kernel, WindowsProcess process, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(process);
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        var threads = new List<WindowsThread>();
        var notes = new List<string>();
        List<WindowsLoadedModule> modules = [];
        if (WindowsPeb.TryGetPeb(kernel, process, out _) is not null)
        {
            (modules, List<string> moduleNotes) = WindowsPeb.AllModules(kernel, process);
            notes.AddRange(moduleNotes.Select(n => "loader lists: " + n));
        }
        var reader = new WindowsMemoryReader(kernel.Kernel);
        ulong head = process.Address + (ulong)layout.ProcessThreads;
        if (!reader.TryUInt64(head, out ulong next))
        {
            notes.Add(reader.Describe("_EPROCESS.ThreadListHead"));
            return (threads, notes);
        }
        var seen = new HashSet<ulong> { head };
        while (next != head)
        {
            ct.ThrowIfCancellationRequested();
            if (!seen.Add(next))
            {
                notes.Add($"thread list cycle at 0x{next:X} after {threads.Count} threads; walk stopped");
                break;
            }
            if (threads.Count >= MaxThreads)
            {
                notes.Add($"more than {MaxThreads} threads; walk stopped");
                break;
            }
            ulong ethread = next - (ulong)layout.ThreadListEntry;
            if (!reader.TryUInt64(ethread + (ulong)layout.ThreadPid, out ulong pid)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadTid, out ulong tid)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadStart, out ulong start)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadWin32Start, out ulong win32Start)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadCreateTime, out ulong created)
                || !reader.TryUInt64(next, out ulong following))
            {
                notes.Add($"bad thread list pointer 0x{next:X} after {threads.Count} threads ({reader.Failure}); walk stopped");
                break;
            }
            ulong exited = layout.ThreadExitTime is int e && reader.TryUInt64(ethread + (ulong)e, out ulong x) ? x : 0;
            string? startModule = Resolve(kernel, modules, start);
            string? win32Module = Resolve(kernel, modules, win32Start);
            string? suspicious = null;
            if (win32Start != 0 && win32Start <= UserLimit && win32Module is null)
            {
                suspicious = "Win32StartAddress in no loaded module (private memory?)";
            }
            else if (start != 0 && start <= UserLimit && startModule is null)
            {
                suspicious = "StartAddress in no loaded module (private memory?)";
            }
            DateTime? createTime = WindowsProcesses.FileTime(created);
            threads.Add(new WindowsThread($"0x{ethread:X}", (long)pid, (long)tid, $"0x{start:X}", startModule, $"0x{win32Start:X}", win32Module,
                WindowsProcesses.Iso(createTime), WindowsProcesses.Iso(WindowsProcesses.FileTime(exited)), suspicious)
            {
                Address = ethread,
                Start = start,
                Win32Start = win32Start,
                CreateTimeUtc = createTime,
            });
            next = following;
        }
        return (threads, notes);
    }

    /// <summary>windows.threads: the threads of every process on the active list (or of <paramref name="pids"/>).</summary>
    public static RowsReport<WindowsThread> Threads(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsThread>();
        foreach (WindowsProcess p in processes)
        {
            (List<WindowsThread> threads, List<string> threadNotes) = List(kernel, p, ct);
            rows.AddRange(threads);
            notes.AddRange(threadNotes.Select(n => $"{p.Pid} {p.ImageFileName}: {n}"));
        }
        return new RowsReport<WindowsThread>("windows.threads", rows, notes);
    }

    private static string? Resolve(WindowsKernel kernel, List<WindowsLoadedModule> modules, ulong va)
    {
        if (va == 0)
        {
            return null;
        }
        if (va > UserLimit)
        {
            return va >= kernel.KernelBase && va - kernel.KernelBase < kernel.Image.SizeOfImage ? KernelImageName : null;
        }
        WindowsLoadedModule? module = modules.FirstOrDefault(m => m.Contains(va));
        return module is null ? null : module.Name ?? $"module at 0x{module.Base:X}";
    }

}
