using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>The ELF header's e_type.</summary>
public enum ElfImageType
{
    /// <summary>Another value.</summary>
    Unknown,
    /// <summary>ET_REL (1).</summary>
    Relocatable,
    /// <summary>ET_EXEC (2): a fixed-address executable.</summary>
    Executable,
    /// <summary>ET_DYN (3): a shared object or position-independent executable.</summary>
    SharedObject,
    /// <summary>ET_CORE (4).</summary>
    Core,
}

/// <summary>An ELF image mapped by a process (linux.elfs).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Comm">task_struct.comm.</param>
/// <param name="Start">Start of the mapping that holds the ELF header.</param>
/// <param name="End">End of that mapping.</param>
/// <param name="ImageEnd">End of the last mapping of the same file (or, for memory not backed by a file, of the header's mapping).</param>
/// <param name="Path">The mapped file ([vdso] for the kernel's vDSO, empty for anonymous memory: an ELF loaded without a file).</param>
/// <param name="Inode">Inode number of the mapped file, or null.</param>
/// <param name="Type">e_type.</param>
/// <param name="Bits">32 or 64 (EI_CLASS).</param>
/// <param name="Machine">e_machine (62 x86-64, 3 i386, 183 AArch64).</param>
/// <param name="Entry">e_entry as written in the header (relative for position-independent images).</param>
/// <param name="Finding">Why the image is worth a look (anonymous memory, a deleted or memfd file), or null.</param>
public sealed record LinuxElf(int Pid, string Comm, [property: Hex] ulong Start, [property: Hex] ulong End, [property: Hex] ulong ImageEnd, string Path,
    ulong? Inode, ElfImageType Type, int Bits, int Machine, [property: Hex] ulong Entry, string? Finding);

/// <summary>
/// linux.elfs: every mapping of every process whose first bytes are an ELF header (executables, shared objects, the vDSO,
/// and ELF images in anonymous or memfd memory). Header pages not in the capture are skipped and counted in a note.
/// </summary>
public static class LinuxElfs
{
    private const int HeaderSize = 64;

    /// <summary>linux.elfs.</summary>
    public static RowsReport<LinuxElf> Run(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, pids, ct);
        var rows = new List<LinuxElf>();
        List<LinuxProcess> processes = LinuxProcesses.List(context, ct).Processes;
        int unreadable = 0;
        Span<byte> header = stackalloc byte[HeaderSize];
        foreach (IGrouping<int, LinuxMapping> process in maps.GroupBy(m => m.Pid))
        {
            ct.ThrowIfCancellationRequested();
            AddressSpace? space = LinuxMalfind.UserSpace(context, processes, process.Key);
            if (space is null)
            {
                notes.Add($"pid {process.Key}: the page tables cannot be read: no ELF headers checked");
                continue;
            }
            List<LinuxMapping> mappings = [.. process];
            foreach (LinuxMapping map in mappings.Where(m => m.PageOffset == 0 && (m.VmFlags & 1) != 0))
            {
                if (space.Read(map.Start, header) != HeaderSize)
                {
                    unreadable += map.File != 0 ? 1 : 0; // untouched anonymous memory is normal
                    continue;
                }
                if (!header.StartsWith("\u007fELF"u8) || header[4] is not (1 or 2) || header[5] != 1)
                {
                    continue;
                }
                bool is64 = header[4] == 2;
                ushort type = BinaryPrimitives.ReadUInt16LittleEndian(header[16..]);
                ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(header[18..]);
                ulong entry = is64 ? BinaryPrimitives.ReadUInt64LittleEndian(header[24..]) : BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
                ulong imageEnd = map.File == 0 ? map.End
                    : mappings.Where(m => m.Start >= map.Start && m.Path == map.Path && m.Inode == map.Inode).Max(m => m.End);
                rows.Add(new LinuxElf(map.Pid, map.Comm, map.Start, map.End, imageEnd, map.Path, map.Inode,
                    type is >= 1 and <= 4 ? (ElfImageType)type : ElfImageType.Unknown, is64 ? 64 : 32, machine, entry, Finding(map)));
            }
        }
        if (unreadable > 0)
        {
            notes.Add($"{unreadable} file mappings at offset 0 have their first page outside the capture (paged out or not loaded): not checked");
        }
        return new RowsReport<LinuxElf>("linux.elfs", rows, notes);
    }

    private static string? Finding(LinuxMapping map) => map switch
    {
        { Anonymous: true, Path: "" } => "ELF image in anonymous memory (loaded without a file)",
        { Anonymous: true } => null, // [vdso] and other special mappings
        _ when map.Path.Contains("/memfd:", StringComparison.Ordinal) => "ELF image in a memfd (fileless execution)",
        _ when map.Path.EndsWith(" (deleted)", StringComparison.Ordinal) => "ELF image of a deleted file",
        _ => null,
    };

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.elfs", "ELF images mapped by each process (header checked in memory): range, path, type, class, machine, entry; anonymous, memfd and deleted images flagged",
            TargetOs.Linux, PluginInputs.ProcessFilter, (c, a, ct) => Run(c.Linux(ct), a.IntPids, ct));
    }
}
