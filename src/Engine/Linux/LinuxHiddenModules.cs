using System.Buffers.Binary;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>A kernel module seen by at least one of three sources (linux.hidden_modules).</summary>
/// <param name="Name">module.name.</param>
/// <param name="Offset">Virtual address of the struct module.</param>
/// <param name="State">module.state decoded (Live, Coming, Going, Unformed).</param>
/// <param name="InModuleList">On the kernel's `modules` list (what lsmod and /proc/modules show).</param>
/// <param name="InSysfs">Its kobject is on module_kset's list (/sys/module) with mkobj.mod pointing back at it.</param>
/// <param name="InMemoryScan">Found by scanning the module mapping area for struct module (module.mkobj.mod == itself).</param>
/// <param name="Hidden">Seen by sysfs or the scan but not on the module list (unlinked to hide it from lsmod).</param>
/// <param name="Finding">What disagrees, in words, or null when all sources agree.</param>
public sealed record LinuxModuleView(string Name, [property: Hex] ulong Offset, string State, bool InModuleList, bool InSysfs, bool InMemoryScan, bool Hidden, string? Finding);

/// <summary>
/// Cross-checks the module list against two other sources available from memory alone: the sysfs kobjects
/// (module_kset) and a scan of the module mapping area for struct module. A module unlinked from `modules`
/// (the classic rootkit trick) stays in the others.
/// </summary>
public static class LinuxHiddenModules
{
    /// <summary>Start of the x86-64 module mapping area (MODULES_VADDR with the default 1 GiB kernel image).</summary>
    public const ulong ModulesStart = 0xFFFFFFFFC0000000;

    /// <summary>End of the x86-64 module mapping area (MODULES_END).</summary>
    public const ulong ModulesEnd = 0xFFFFFFFFFF000000;

    private const int NameLength = 56; // MODULE_NAME_LEN

    private sealed class Seen(ulong address)
    {
        public ulong Address { get; } = address;
        public bool List { get; set; }
        public bool Sysfs { get; set; }
        public bool Scan { get; set; }
    }

    /// <summary>linux.hidden_modules: every module seen by any source, with the sources that saw it.</summary>
    public static RowsReport<LinuxModuleView> HiddenModules(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxModuleView> rows, List<string> notes) = Compare(context, ct);
        return new RowsReport<LinuxModuleView>("linux.hidden_modules", rows, notes);
    }

    /// <summary>The comparison rows (module list order, then the others by address) and notes.</summary>
    public static (List<LinuxModuleView> Modules, List<string> Notes) Compare(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxModuleView>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        if (!t.TryGetOffset("module", "list", out int listOffset) || !t.TryGetOffset("module", "name", out int nameOffset)
            || !t.TryGetOffset("module", "state", out int stateOffset) || !t.TryGetOffset("module", "mkobj", out int mkobjOffset)
            || !t.TryGetOffset("module_kobject", "mod", out int modOffset) || !t.TryGetOffset("module_kobject", "kobj", out int kobjOffset)
            || !t.TryGetSize("module", out int moduleSize))
        {
            notes.Add("the type information lacks struct module (list, name, state, mkobj) or module_kobject (kobj, mod)");
            return (rows, notes);
        }
        var seen = new Dictionary<ulong, Seen>();
        Seen Get(ulong address) => seen.TryGetValue(address, out Seen? s) ? s : seen[address] = new Seen(address);

        // 1. The module list.
        var order = new List<ulong>();
        if (context.Kernel.Symbols.TryGetAddress("modules", out ulong head))
        {
            foreach (ulong entry in context.WalkList(head, "module list", "modules", AnalysisLimits.Default.MaxKernelModules, notes, ct))
            {
                ulong module = entry - (ulong)listOffset;
                Get(module).List = true;
                order.Add(module);
            }
        }
        else
        {
            notes.Add("symbol 'modules' not found: the module list is not compared");
        }

        // 2. sysfs: module_kset->list holds kobject.entry of each struct module_kobject; mkobj.mod leads to the module.
        if (context.Kernel.Symbols.TryGetAddress("module_kset", out ulong ksetPointer) && k.TryReadUInt64(ksetPointer, out ulong kset)
            && t.TryGetOffset("kset", "list", out int ksetList) && t.TryGetOffset("kobject", "entry", out int kobjectEntry))
        {
            foreach (ulong entry in context.WalkList(kset + (ulong)ksetList, "module_kset list", "kobjects", AnalysisLimits.Default.MaxKernelModules, notes, ct))
            {
                ulong mkobj = entry - (ulong)kobjectEntry - (ulong)kobjOffset;
                // Built-in modules with parameters have a module_kobject with mod == NULL.
                if (k.TryReadUInt64(mkobj + (ulong)modOffset, out ulong mod) && mod != 0 && mod + (ulong)mkobjOffset == mkobj)
                {
                    Get(mod).Sysfs = true;
                }
            }
        }
        else
        {
            notes.Add("module_kset (or kset.list, kobject.entry) not available: sysfs is not compared");
        }

        // 3. Scan the module area: struct module is cache-line aligned and its mkobj.mod points back at itself.
        byte[] page = new byte[4096 + moduleSize];
        for (ulong va = ModulesStart; va < ModulesEnd; va += 4096)
        {
            ct.ThrowIfCancellationRequested();
            if (!k.TryTranslate(va, out _, out _))
            {
                continue;
            }
            int got = k.Read(va, page);
            for (int off = 0; off < 4096 && off + moduleSize <= got; off += 64)
            {
                ulong candidate = va + (ulong)off;
                ReadOnlySpan<byte> m = page.AsSpan(off, moduleSize);
                if (BinaryPrimitives.ReadUInt64LittleEndian(m[(mkobjOffset + modOffset)..]) == candidate
                    && BinaryPrimitives.ReadUInt32LittleEndian(m[stateOffset..]) <= 3
                    && IsName(m.Slice(nameOffset, NameLength)))
                {
                    Get(candidate).Scan = true;
                    if (seen.Count > AnalysisLimits.Default.MaxKernelModules)
                    {
                        notes.Add($"more than {AnalysisLimits.Default.MaxKernelModules} modules: the scan stopped");
                        va = ModulesEnd;
                        break;
                    }
                }
            }
        }

        foreach (Seen s in order.Select(a => seen[a]).Concat(seen.Values.Where(x => !x.List).OrderBy(x => x.Address)).Distinct())
        {
            string name = k.ReadCString(s.Address + (ulong)nameOffset, NameLength) ?? "?";
            string state = k.TryReadUInt32(s.Address + (ulong)stateOffset, out uint st) ? StateName(st) : "?";
            bool hidden = !s.List && (s.Sysfs || s.Scan);
            var missing = new List<string>();
            if (!s.List)
            {
                missing.Add("not on the module list");
            }
            if (!s.Sysfs)
            {
                missing.Add("not in sysfs (module_kset)");
            }
            if (!s.Scan)
            {
                missing.Add("not found by the module-area scan");
            }
            rows.Add(new LinuxModuleView(name, s.Address, state, s.List, s.Sysfs, s.Scan, hidden,
                missing.Count == 0 ? null : string.Join("; ", missing)));
        }
        return (rows, notes);
    }

    /// <summary>A module name: 1..55 characters of [A-Za-z0-9_-], NUL-terminated.</summary>
    internal static bool IsName(ReadOnlySpan<byte> name)
    {
        int i = 0;
        while (i < name.Length && name[i] != 0)
        {
            byte c = name[i];
            if (!(char.IsAsciiLetterOrDigit((char)c) || c == '_' || c == '-'))
            {
                return false;
            }
            i++;
        }
        return i > 0 && i < name.Length;
    }

    private static string StateName(uint state) => state switch
    {
        0 => "Live",
        1 => "Coming",
        2 => "Going",
        3 => "Unformed",
        _ => $"0x{state:X}",
    };
}
