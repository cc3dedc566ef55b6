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
/// <param name="Base">Start of the module's core (6.1: core_layout.base; 6.4+: mem[MOD_TEXT].base), null when unreadable.</param>
/// <param name="Size">Size of that core in bytes, null when unreadable.</param>
public sealed record LinuxModuleView(string Name, [property: Hex] ulong Offset, string State, bool InModuleList, bool InSysfs, bool InMemoryScan, bool Hidden, string? Finding,
    [property: Hex] ulong? Base, [property: Hex] ulong? Size);

/// <summary>Where a struct module keeps the base and size of its core: 6.1 core_layout.{base,size}; 6.4+ mem[MOD_TEXT].{base,size}.</summary>
internal sealed class ModuleCoreLayout
{
    private readonly int _base;
    private readonly int _size;

    private ModuleCoreLayout(int baseOffset, int sizeOffset)
    {
        _base = baseOffset;
        _size = sizeOffset;
    }

    /// <summary>The layout, or null when the types have neither form.</summary>
    public static ModuleCoreLayout? Resolve(TypeModel t)
    {
        if (t.TryGetOffset("module", "core_layout.base", out int baseOffset) && t.TryGetOffset("module", "core_layout.size", out int sizeOffset))
        {
            return new ModuleCoreLayout(baseOffset, sizeOffset);
        }
        // mem[0] is MOD_TEXT: module_memory.base and .size of the first element.
        return t.TryGetOffset("module", "mem", out int mem) && t.TryGetOffset("module_memory", "base", out int b) && t.TryGetOffset("module_memory", "size", out int sz)
            ? new ModuleCoreLayout(mem + b, mem + sz) : null;
    }

    /// <summary>Reads the core's base and size of the struct module at <paramref name="module"/>.</summary>
    public bool TryRead(IVirtualMemory k, ulong module, out ulong moduleBase, out ulong size)
    {
        size = 0;
        bool ok = k.TryReadUInt64(module + (ulong)_base, out moduleBase) & k.TryReadUInt32(module + (ulong)_size, out uint s);
        size = s;
        return ok;
    }
}

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

        ModuleCoreLayout? core = ModuleCoreLayout.Resolve(t);
        if (core is null)
        {
            notes.Add("the type information has neither module.core_layout nor module.mem: no module base and size");
        }
        foreach (Seen s in order.Select(a => seen[a]).Concat(seen.Values.Where(x => !x.List).OrderBy(x => x.Address)).Distinct())
        {
            ulong coreBase = 0, coreSize = 0;
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
            bool hasCore = core is not null && core.TryRead(k, s.Address, out coreBase, out coreSize);
            rows.Add(new LinuxModuleView(name, s.Address, state, s.List, s.Sysfs, s.Scan, hidden,
                missing.Count == 0 ? null : string.Join("; ", missing), hasCore ? coreBase : null, hasCore ? coreSize : null));
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
