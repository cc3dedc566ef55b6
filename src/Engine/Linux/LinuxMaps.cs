using System.Buffers.Binary;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>One memory mapping of a process (linux.maps), the columns of /proc/PID/maps.</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Comm">task_struct.comm.</param>
/// <param name="Start">First address of the mapping (vm_start).</param>
/// <param name="End">Address after the mapping (vm_end).</param>
/// <param name="Flags">Permissions as /proc/PID/maps prints them ("r-xp").</param>
/// <param name="PageOffset">File offset of the mapping's start in bytes (0 for anonymous memory).</param>
/// <param name="Inode">Inode number of the mapped file, or null.</param>
/// <param name="Path">Mapped file, [heap], [stack], a special mapping's name, or empty for anonymous memory.</param>
public sealed record LinuxMapping(int Pid, string Comm, [property: Hex] ulong Start, [property: Hex] ulong End, string Flags,
    [property: Hex] ulong PageOffset, ulong? Inode, string Path)
{
    internal ulong VmFlags { get; init; }
    internal bool Anonymous { get; init; }

    /// <summary>The vm_area_struct's kernel address.</summary>
    internal ulong Vma { get; init; }

    /// <summary>vm_pgoff: the file offset of the mapping's start in pages (0 for anonymous mappings).</summary>
    internal ulong PageIndex { get; init; }

    /// <summary>vm_file (0 for anonymous mappings).</summary>
    internal ulong File { get; init; }
}

/// <summary>
/// Walks a process's memory mappings: the maple tree of Linux 6.1+ (mm->mm_mt), or the older mmap linked list.
/// File paths are rebuilt from dentries and mounts, with " (deleted)" for unlinked files, as the kernel's d_path does.
/// </summary>
public static class LinuxMaps
{
    private const ulong VmRead = 1, VmWrite = 2, VmExec = 4, VmShared = 8;

    private sealed class Layout(TypeModel t)
    {
        // Resolved once per walk (these are read for every VMA / socket / dentry level).
        public int MmMt { get; } = t.OptionalOffset("mm_struct", "mm_mt");
        public int MmMmap { get; } = t.OptionalOffset("mm_struct", "mmap");
        public int MaRoot { get; } = t.OptionalOffset("maple_tree", "ma_root");
        public int Range64Slot { get; } = t.OptionalOffset("maple_range_64", "slot");
        public int Arange64Slot { get; } = t.OptionalOffset("maple_arange_64", "slot");
        public int NodeSlot { get; } = t.OptionalOffset("maple_node", "slot");
        public int VmStart { get; } = t.OptionalOffset("vm_area_struct", "vm_start");
        public int VmEnd { get; } = t.OptionalOffset("vm_area_struct", "vm_end");
        public int VmNext { get; } = t.OptionalOffset("vm_area_struct", "vm_next");
        public int VmFlags { get; } = t.OptionalOffset("vm_area_struct", "vm_flags");
        public int VmPgoff { get; } = t.OptionalOffset("vm_area_struct", "vm_pgoff");
        public int VmFile { get; } = t.OptionalOffset("vm_area_struct", "vm_file");
        public int VmMm { get; } = t.OptionalOffset("vm_area_struct", "vm_mm");
        public int VmOps { get; } = t.OptionalOffset("vm_area_struct", "vm_ops");
        public int VmPrivate { get; } = t.OptionalOffset("vm_area_struct", "vm_private_data");
        public int SpecialName { get; } = t.OptionalOffset("vm_special_mapping", "name");
        public int MmStartBrk { get; } = t.OptionalOffset("mm_struct", "start_brk");
        public int MmBrk { get; } = t.OptionalOffset("mm_struct", "brk");
        public int MmStartStack { get; } = t.OptionalOffset("mm_struct", "start_stack");
        public int FileInode { get; } = t.OptionalOffset("file", "f_inode");
        public int InodeIno { get; } = t.OptionalOffset("inode", "i_ino");
    }

    /// <summary>Mappings of every user process (or of the given pids).</summary>
    public static (List<LinuxMapping> Maps, List<string> Notes) List(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        var l = new Layout(context.Types);
        var notes = new List<string>();
        var rows = new List<LinuxMapping>();
        if (l.VmStart < 0 || l.VmEnd < 0 || (l.MmMt < 0 && l.MmMmap < 0))
        {
            notes.Add($"the type information ({context.Types.Source}) lacks vm_area_struct or the mm's mapping tree");
            return (rows, notes);
        }
        (List<LinuxProcess> processes, List<string> listNotes) = LinuxProcesses.List(context, ct);
        notes.AddRange(listNotes);
        IVirtualMemory k = context.Kernel.Kernel;
        context.Kernel.Symbols.TryGetAddress("special_mapping_vmops", out ulong specialOps);
        var paths = new LinuxFilePaths(context);
        foreach (LinuxProcess process in processes.Where(p => p.Mm != 0 && (pids is null || pids.Contains(p.Pid))))
        {
            ct.ThrowIfCancellationRequested();
            List<ulong> vmas = l.MmMt >= 0 ? MapleVmas(k, l, process.Mm, notes) : ListVmas(k, l, process.Mm, notes);
            ulong startBrk = Read64(k, process.Mm, l.MmStartBrk), brk = Read64(k, process.Mm, l.MmBrk), startStack = Read64(k, process.Mm, l.MmStartStack);
            foreach (ulong vma in vmas)
            {
                ulong start = Read64(k, vma, l.VmStart), end = Read64(k, vma, l.VmEnd), flags = Read64(k, vma, l.VmFlags);
                ulong pgoff = Read64(k, vma, l.VmPgoff), file = Read64(k, vma, l.VmFile);
                string path = "";
                ulong? inode = null;
                if (file != 0)
                {
                    path = paths.Resolve(file).Path;
                    inode = l.FileInode >= 0 && l.InodeIno >= 0 && k.TryReadUInt64(file + (ulong)l.FileInode, out ulong ino) && k.TryReadUInt64(ino + (ulong)l.InodeIno, out ulong n) ? n : null;
                }
                else if (start <= startBrk && end >= brk && brk != 0)
                {
                    path = "[heap]";
                }
                else if (start <= startStack && startStack < end)
                {
                    path = "[stack]";
                }
                else if (specialOps != 0 && l.VmOps >= 0 && Read64(k, vma, l.VmOps) == specialOps && l.VmPrivate >= 0 && l.SpecialName >= 0)
                {
                    ulong special = Read64(k, vma, l.VmPrivate);
                    ulong namePtr = Read64(k, special, l.SpecialName);
                    path = namePtr != 0 ? k.ReadCString(namePtr, 64) ?? "" : "";
                }
                string perms = $"{((flags & VmRead) != 0 ? 'r' : '-')}{((flags & VmWrite) != 0 ? 'w' : '-')}{((flags & VmExec) != 0 ? 'x' : '-')}{((flags & VmShared) != 0 ? 's' : 'p')}";
                rows.Add(new LinuxMapping(process.Pid, process.Comm, start, end, perms, file != 0 ? pgoff * 4096 : 0, inode, path)
                {
                    VmFlags = flags,
                    Anonymous = file == 0,
                    Vma = vma,
                    PageIndex = file != 0 ? pgoff : 0,
                    File = file,
                });
            }
        }
        return (rows, notes);
    }

    private static ulong Read64(IVirtualMemory k, ulong address, int offset)
        => offset >= 0 && address != 0 && k.TryReadUInt64(address + (ulong)offset, out ulong value) ? value : 0;

    /// <summary>VMAs of a 6.1+ mm from its maple tree (leaves hold the VMA pointers), sorted by start.</summary>
    private static List<ulong> MapleVmas(IVirtualMemory k, Layout l, ulong mm, List<string> notes)
    {
        var vmas = new HashSet<ulong>();
        ulong root = Read64(k, mm + (ulong)l.MmMt, l.MaRoot);
        var stack = new Stack<(ulong Entry, int Depth)>();
        stack.Push((root, 0));
        int nodes = 0;
        while (stack.Count > 0)
        {
            (ulong entry, int depth) = stack.Pop();
            if (entry == 0)
            {
                continue;
            }
            bool isNode = (entry & 3) == 2 && entry > 4096;
            if (!isNode)
            {
                vmas.Add(entry);
                continue;
            }
            if (depth > 16 || ++nodes > AnalysisLimits.Default.MaxVads)
            {
                notes.Add($"maple tree of mm 0x{mm:X} is deeper or larger than possible: stopped");
                break;
            }
            ulong node = entry & ~0xFFUL;
            int type = (int)((entry >> 3) & 0xF);
            (int slotOffset, int slots, bool leaf) = type switch
            {
                0 => (l.NodeSlot, 31, true),        // maple_dense
                1 => (l.Range64Slot, 16, true),     // maple_leaf_64
                2 => (l.Range64Slot, 16, false),    // maple_range_64
                3 => (l.Arange64Slot, 10, false),   // maple_arange_64
                _ => (-1, 0, false),
            };
            if (slotOffset < 0)
            {
                notes.Add($"maple node 0x{node:X} of mm 0x{mm:X} has unknown type {type}");
                continue;
            }
            byte[] raw = new byte[slots * 8];
            if (k.Read(node + (ulong)slotOffset, raw) != raw.Length)
            {
                notes.Add($"maple node 0x{node:X} of mm 0x{mm:X} is not readable");
                continue;
            }
            for (int i = slots - 1; i >= 0; i--)
            {
                ulong slot = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
                if (slot == 0)
                {
                    continue;
                }
                if (leaf)
                {
                    if ((slot & 3) != 2)
                    {
                        vmas.Add(slot);
                    }
                }
                else
                {
                    stack.Push((slot, depth + 1));
                }
            }
        }
        // A leaf slot is only a VMA if it points back at this mm.
        var valid = vmas.Where(v => l.VmMm < 0 || Read64(k, v, l.VmMm) == mm)
            .Select(v => (Vma: v, Start: Read64(k, v, l.VmStart)))
            .OrderBy(v => v.Start).Select(v => v.Vma).ToList();
        return valid;
    }

    /// <summary>VMAs of an older mm from its mmap list.</summary>
    private static List<ulong> ListVmas(IVirtualMemory k, Layout l, ulong mm, List<string> notes)
    {
        ListWalk walk = KernelLists.Linear(k, Read64(k, mm, l.MmMmap), "VMAs", AnalysisLimits.Default.MaxVads,
            KernelLists.IsKernelAddress, nextOffset: l.VmNext);
        if (walk.Note is not null)
        {
            notes.Add($"VMA list (mmap) of mm 0x{mm:X}: {walk.Note}");
        }
        return [.. walk.Entries];
    }

    /// <summary>The path of a struct file, across mounts, with " (deleted)" when its dentry is unhashed (as d_path gives it).</summary>
    public static string FilePath(IVirtualMemory k, LinuxContext context, ulong file) => new LinuxFilePaths(context).Resolve(file).Path;
}
