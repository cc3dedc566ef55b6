using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>One process on the kernel's active process list.</summary>
/// <param name="Offset">Virtual address of the _EPROCESS, hex.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Ppid">InheritedFromUniqueProcessId.</param>
/// <param name="ImageFileName">The 15-byte ImageFileName.</param>
/// <param name="CreateTime">CreateTime in UTC as ISO 8601 (<c>2024-07-07T09:30:02.0000000Z</c>, 100 ns precision), or null when zero or out of range.</param>
/// <param name="Dtb">Pcb.DirectoryTableBase, hex.</param>
public sealed record WindowsProcess(string Offset, long Pid, long Ppid, string ImageFileName, string? CreateTime, string Dtb)
{
    /// <summary>The _EPROCESS address as a number.</summary>
    internal ulong Address { get; init; }

    /// <summary>CreateTime as a UTC DateTime.</summary>
    internal DateTime? CreateTimeUtc { get; init; }

    /// <summary>The DTB as a number.</summary>
    internal ulong DirectoryTableBase { get; init; }
}

/// <summary>Walks PsActiveProcessHead: the _EPROCESS structures linked through ActiveProcessLinks.</summary>
public static class WindowsProcesses
{
    /// <summary>Cap on list entries followed.</summary>
    public const int MaxProcesses = 100_000;

    /// <summary>
    /// The processes on the active process list in list order. Stops, with a note, at a pointer that does not read, a
    /// non-canonical pointer, an entry seen before (a cycle not through the head) or <see cref="MaxProcesses"/>.
    /// </summary>
    public static (List<WindowsProcess> Processes, List<string> Notes) List(WindowsKernel kernel, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var processes = new List<WindowsProcess>();
        var notes = new List<string>();
        int links = Offset(kernel, "_EPROCESS", "ActiveProcessLinks");
        int pidOff = Offset(kernel, "_EPROCESS", "UniqueProcessId");
        int ppidOff = Offset(kernel, "_EPROCESS", "InheritedFromUniqueProcessId");
        int nameOff = Offset(kernel, "_EPROCESS", "ImageFileName");
        int timeOff = Offset(kernel, "_EPROCESS", "CreateTime");
        int dtbOff = Offset(kernel, "_EPROCESS", "Pcb") + Offset(kernel, "_KPROCESS", "DirectoryTableBase");
        if (!kernel.TryGetSymbol("PsActiveProcessHead", out ulong head))
        {
            throw new KernelNotFoundException($"{kernel.Types.Source} has no PsActiveProcessHead symbol");
        }
        AddressSpace space = kernel.Kernel;
        if (!space.TryReadUInt64(head, out ulong next))
        {
            space.TryTranslate(head, out _, out TranslationFault fault);
            notes.Add($"PsActiveProcessHead at 0x{head:X} does not read ({fault})");
            return (processes, notes);
        }
        var seen = new HashSet<ulong> { head };
        byte[] name = new byte[15];
        while (next != head)
        {
            ct.ThrowIfCancellationRequested();
            if (!seen.Add(next))
            {
                notes.Add($"list cycle: entry 0x{next:X} seen before, after {processes.Count} processes; walk stopped");
                break;
            }
            if (processes.Count >= MaxProcesses)
            {
                notes.Add($"more than {MaxProcesses} processes; walk stopped");
                break;
            }
            ulong eprocess = next - (ulong)links;
            if (!space.TryReadUInt64(eprocess + (ulong)pidOff, out ulong pid)
                || !space.TryReadUInt64(eprocess + (ulong)ppidOff, out ulong ppid)
                || space.Read(eprocess + (ulong)nameOff, name) != name.Length
                || !space.TryReadUInt64(eprocess + (ulong)timeOff, out ulong created)
                || !space.TryReadUInt64(eprocess + (ulong)dtbOff, out ulong dtb)
                || !space.TryReadUInt64(next, out ulong following))
            {
                space.TryTranslate(next, out _, out TranslationFault fault);
                notes.Add($"bad list pointer 0x{next:X} after {processes.Count} processes ({(fault == TranslationFault.None ? "_EPROCESS fields do not read" : fault.ToString())}); walk stopped");
                break;
            }
            int nul = Array.IndexOf(name, (byte)0);
            string text = System.Text.Encoding.ASCII.GetString(name, 0, nul >= 0 ? nul : name.Length);
            DateTime? createTime = FileTime(created);
            processes.Add(new WindowsProcess($"0x{eprocess:X}", (long)pid, (long)ppid, text,
                Iso(createTime), $"0x{dtb:X}")
            {
                CreateTimeUtc = createTime,
                Address = eprocess,
                DirectoryTableBase = dtb,
            });
            next = following;
        }
        return (processes, notes);
    }

    /// <summary>The processes on the active list, restricted to <paramref name="pids"/> when given, and the walk's notes.</summary>
    public static (List<WindowsProcess> Processes, List<string> Notes) Select(WindowsKernel kernel, ISet<long>? pids, CancellationToken ct)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.List(kernel, ct);
        return (pids is null ? processes : [.. processes.Where(p => pids.Contains(p.Pid))], notes);
    }

    /// <summary>A UTC time as every Windows plugin prints it (ISO 8601 with 100 ns digits).</summary>
    internal static string? Iso(DateTime? time) => time?.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>windows.pslist.</summary>
    public static RowsReport<WindowsProcess> PsList(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<WindowsProcess> processes, List<string> notes) = List(kernel, ct);
        return new RowsReport<WindowsProcess>("windows.pslist", processes, notes);
    }

    internal static DateTime? FileTime(ulong value)
        => value == 0 || value > (ulong)DateTime.MaxValue.ToFileTimeUtc() ? null : DateTime.FromFileTimeUtc((long)value);

    private static int Offset(WindowsKernel kernel, string structName, string field)
        => kernel.Types.TryGetOffset(structName, field, out int offset)
            ? offset
            : throw new KernelNotFoundException($"{kernel.Types.Source} has no {structName}.{field}");
}
