using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>One process on the kernel's active process list.</summary>
/// <param name="Offset">Virtual address of the _EPROCESS.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Ppid">InheritedFromUniqueProcessId.</param>
/// <param name="ImageFileName">The 15-byte ImageFileName.</param>
/// <param name="CreateTime">CreateTime (UTC), or null when zero or out of range.</param>
/// <param name="Dtb">Pcb.DirectoryTableBase.</param>
public sealed record WindowsProcess([property: Hex] ulong Offset, long Pid, long Ppid, string ImageFileName, DateTimeOffset? CreateTime,
    [property: Hex] ulong Dtb);

/// <summary>Walks PsActiveProcessHead: the _EPROCESS structures linked through ActiveProcessLinks.</summary>
public static class WindowsProcesses
{
    /// <summary>
    /// The processes on the active process list in list order. Stops, with a note, at a pointer that does not read, a
    /// pointer that is not a kernel address, an entry seen before (a cycle not through the head), an _EPROCESS whose
    /// fields do not read or <see cref="AnalysisLimits.MaxProcesses"/>.
    /// </summary>
    public static (List<WindowsProcess> Processes, List<string> Notes) List(WindowsKernel kernel, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var processes = new List<WindowsProcess>();
        var notes = new List<string>();
        TypeModel t = kernel.Types;
        int links = t.RequiredOffset("_EPROCESS", "ActiveProcessLinks");
        int pidOff = t.RequiredOffset("_EPROCESS", "UniqueProcessId");
        int ppidOff = t.RequiredOffset("_EPROCESS", "InheritedFromUniqueProcessId");
        int nameOff = t.RequiredOffset("_EPROCESS", "ImageFileName");
        int timeOff = t.RequiredOffset("_EPROCESS", "CreateTime");
        int dtbOff = t.RequiredOffset("_EPROCESS", "Pcb") + t.RequiredOffset("_KPROCESS", "DirectoryTableBase");
        if (!kernel.TryGetSymbol("PsActiveProcessHead", out ulong head))
        {
            throw new KernelNotFoundException($"{t.Source} has no PsActiveProcessHead symbol");
        }
        AddressSpace space = kernel.Kernel;
        ListWalk walk = KernelLists.Circular(space, head, "processes", AnalysisLimits.Default.MaxProcesses, KernelLists.IsKernelAddress,
            cancellationToken: ct);
        byte[] name = new byte[15];
        foreach (ulong link in walk.Entries)
        {
            ulong eprocess = link - (ulong)links;
            if (!space.TryReadUInt64(eprocess + (ulong)pidOff, out ulong pid)
                || !space.TryReadUInt64(eprocess + (ulong)ppidOff, out ulong ppid)
                || space.Read(eprocess + (ulong)nameOff, name) != name.Length
                || !space.TryReadUInt64(eprocess + (ulong)timeOff, out ulong created)
                || !space.TryReadUInt64(eprocess + (ulong)dtbOff, out ulong dtb))
            {
                notes.Add($"_EPROCESS at 0x{eprocess:X} does not read after {processes.Count} processes; walk stopped");
                return (processes, notes);
            }
            int nul = Array.IndexOf(name, (byte)0);
            string text = System.Text.Encoding.ASCII.GetString(name, 0, nul >= 0 ? nul : name.Length);
            processes.Add(new WindowsProcess(eprocess, (long)pid, (long)ppid, text, FileTime(created), dtb));
        }
        if (walk.Note is not null)
        {
            notes.Add(walk.Note);
        }
        return (processes, notes);
    }

    /// <summary>The processes on the active list, restricted to <paramref name="pids"/> when given, and the walk's notes.</summary>
    public static (List<WindowsProcess> Processes, List<string> Notes) Select(WindowsKernel kernel, ISet<long>? pids, CancellationToken ct)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.List(kernel, ct);
        return (pids is null ? processes : [.. processes.Where(p => pids.Contains(p.Pid))], notes);
    }

    /// <summary>windows.pslist.</summary>
    public static RowsReport<WindowsProcess> PsList(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<WindowsProcess> processes, List<string> notes) = List(kernel, ct);
        return new RowsReport<WindowsProcess>("windows.pslist", processes, notes);
    }

    /// <summary>A Windows FILETIME (100 ns since 1601, UTC), or null when zero or out of range.</summary>
    internal static DateTimeOffset? FileTime(ulong value)
        => value == 0 || value > (ulong)DateTime.MaxValue.ToFileTimeUtc() ? null : new DateTimeOffset(DateTime.FromFileTimeUtc((long)value));
}
