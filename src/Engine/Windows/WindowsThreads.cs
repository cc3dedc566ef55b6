using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>windows.threads: one _ETHREAD on a process's ThreadListHead.</summary>
/// <param name="Offset">Virtual address of the _ETHREAD.</param>
/// <param name="Pid">Cid.UniqueProcess.</param>
/// <param name="Tid">Cid.UniqueThread.</param>
/// <param name="StartAddress">_ETHREAD.StartAddress (for user threads Windows puts ntdll!RtlUserThreadStart here).</param>
/// <param name="StartModule">The loaded module holding StartAddress (from the process's loader lists; the kernel image for kernel addresses), or null.</param>
/// <param name="Win32StartAddress">_ETHREAD.Win32StartAddress: where the thread really starts.</param>
/// <param name="Win32StartModule">The loaded module holding Win32StartAddress, or null.</param>
/// <param name="CreateTime">Null when zero.</param>
/// <param name="ExitTime">Null when zero (running).</param>
/// <param name="Suspicious">Set when a user-mode start address lies in no loaded module (code in private memory: the injected-thread sign).</param>
public sealed record WindowsThread([property: Hex] ulong Offset, long Pid, long Tid, [property: Hex] ulong StartAddress, string? StartModule,
    [property: Hex] ulong Win32StartAddress, string? Win32StartModule, DateTimeOffset? CreateTime, DateTimeOffset? ExitTime, string? Suspicious);

/// <summary>Threads of a process: _EPROCESS.ThreadListHead walked through _ETHREAD.ThreadListEntry (bounded, cycle-checked).</summary>
public static class WindowsThreads
{
    /// <summary>Highest user-mode address (canonical lower half).</summary>
    private const ulong UserLimit = 0x0000_7FFF_FFFF_FFFF;

    /// <summary>Name given to start addresses in the kernel image.</summary>
    public const string KernelImageName = "ntoskrnl.exe";

    /// <summary>
    /// The threads of one process with their start addresses resolved against its loader lists. The walk stops with a
    /// note ("thread list: ...") at a cycle, a bad pointer, an _ETHREAD that does not read or
    /// <see cref="AnalysisLimits.MaxThreads"/>.
    /// </summary>
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
            (modules, List<string> moduleNotes) = WindowsPeb.AllModules(kernel, process, ct);
            notes.AddRange(moduleNotes.Select(n => "loader lists: " + n));
        }
        var reader = new WindowsMemoryReader(kernel.Kernel);
        ListWalk walk = KernelLists.Circular(kernel.Kernel, process.Offset + (ulong)layout.ProcessThreads, "threads",
            AnalysisLimits.Default.MaxThreads, KernelLists.IsKernelAddress, cancellationToken: ct);
        foreach (ulong link in walk.Entries)
        {
            ulong ethread = link - (ulong)layout.ThreadListEntry;
            if (!reader.TryUInt64(ethread + (ulong)layout.ThreadPid, out ulong pid)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadTid, out ulong tid)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadStart, out ulong start)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadWin32Start, out ulong win32Start)
                || !reader.TryUInt64(ethread + (ulong)layout.ThreadCreateTime, out ulong created))
            {
                notes.Add($"thread list: _ETHREAD at 0x{ethread:X} does not read after {threads.Count} threads ({reader.Failure}); walk stopped");
                return (threads, notes);
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
            threads.Add(new WindowsThread(ethread, (long)pid, (long)tid, start, startModule, win32Start, win32Module,
                WindowsProcesses.FileTime(created), WindowsProcesses.FileTime(exited), suspicious));
        }
        if (walk.Note is not null)
        {
            notes.Add("thread list: " + walk.Note);
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
