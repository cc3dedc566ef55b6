using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>One slot of a system-call table (linux.check_syscall).</summary>
/// <param name="Table">The table's symbol: sys_call_table (64-bit), ia32_sys_call_table, x32_sys_call_table.</param>
/// <param name="TableAddress">Where the table is.</param>
/// <param name="Index">The system-call number.</param>
/// <param name="Name">The system call's name ("kill"), from the kernel's syscall trace metadata (64-bit table) or from the
/// handler's symbol; null when neither says.</param>
/// <param name="Handler">The address in the slot.</param>
/// <param name="Symbol">The kernel symbol at the handler ("__x64_sys_kill", "name+0x10"), null outside the kernel image.</param>
/// <param name="Owner">Who owns the handler's address.</param>
/// <param name="Module">The module whose core holds the handler (listed or hidden), or null.</param>
/// <param name="Hooked">The slot does not point where it should: outside kernel text, or at a kernel function other than
/// the system call's own handler.</param>
/// <param name="Original">The handler the slot should hold ("__x64_sys_kill"), when derivable and different from the slot's.</param>
/// <param name="OriginalAddress">Its address.</param>
/// <param name="Finding">What is wrong, in words, or null.</param>
public sealed record LinuxSyscallSlot(string Table, [property: Hex] ulong TableAddress, int Index, string? Name, [property: Hex] ulong Handler,
    string? Symbol, KernelOwner Owner, string? Module, bool Hooked, string? Original, [property: Hex] ulong? OriginalAddress, string? Finding);

/// <summary>
/// linux.check_syscall: every slot of the system-call tables resolved to its kernel symbol or the module that holds it;
/// slots outside kernel text (or at the wrong kernel function) are flagged with the handler they should hold. From the
/// image alone: kallsyms for the tables and names, BTF for struct syscall_metadata, the module list/sysfs/scan for owners.
/// </summary>
public static class LinuxCheckSyscall
{
    /// <summary>The tables and the prefix of their handlers' symbols.</summary>
    private static readonly (string Table, string Prefix)[] s_tables =
        [("sys_call_table", "__x64_sys_"), ("ia32_sys_call_table", "__ia32_sys_"), ("x32_sys_call_table", "__x64_sys_")];

    /// <summary>linux.check_syscall.</summary>
    public static RowsReport<LinuxSyscallSlot> Run(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxSyscallSlot>();
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        IVirtualMemory k = context.Kernel.Kernel;
        int limit = AnalysisLimits.Default.MaxSyscallTableEntries;
        string[]? metadataNames = MetadataNames(context, limit, notes);
        foreach ((string table, string prefix) in s_tables)
        {
            if (!context.Kernel.Symbols.TryGetAddress(table, out ulong tableAddress))
            {
                if (table == "sys_call_table")
                {
                    notes.Add("symbol sys_call_table not found: the 64-bit table is not checked");
                }
                continue;
            }
            // The table's length: up to the next symbol (the tables are arrays of NR_syscalls pointers).
            ulong span = map.NextSymbolAfter(tableAddress) is ulong next ? (next - tableAddress) / 8 : ulong.MaxValue;
            int count = (int)Math.Min(span, (ulong)limit);
            if (span > (ulong)limit)
            {
                notes.Add($"{table}: length not bounded by the next symbol: {limit} slots read");
            }
            string[]? names = table == "sys_call_table" ? metadataNames : null;
            var slots = new ulong?[count];
            for (int index = 0; index < count; index++)
            {
                ulong slot = tableAddress + ((ulong)index * 8);
                slots[index] = k.TryReadUInt64(slot, out ulong handler) ? handler : null;
            }
            // Zero slots after the last handler are the alignment padding before the next symbol, not system calls.
            while (count > 0 && slots[count - 1] == 0)
            {
                count--;
            }
            for (int index = 0; index < count; index++)
            {
                ct.ThrowIfCancellationRequested();
                if (slots[index] is not ulong handler)
                {
                    notes.Add($"{table}[{index}] at 0x{tableAddress + ((ulong)index * 8):X} is unreadable");
                    continue;
                }
                rows.Add(Slot(map, table, prefix, tableAddress, index, handler, names is not null && index < names.Length ? names[index] : null));
            }
        }
        return new RowsReport<LinuxSyscallSlot>("linux.check_syscall", rows, notes);
    }

    private static LinuxSyscallSlot Slot(KernelAddressMap map, string table, string prefix, ulong tableAddress, int index, ulong handler, string? metadataName)
    {
        string? symbol = map.SymbolAt(handler, prefix);
        (KernelOwner owner, LinuxModuleView? module) = map.OwnerOf(handler);
        // The name: the trace metadata says which call the slot is for; else the handler's own symbol, if it is one.
        string? name = metadataName ?? (symbol is not null && symbol.StartsWith(prefix, StringComparison.Ordinal) && !symbol.Contains('+', StringComparison.Ordinal)
            ? symbol[prefix.Length..] : null);
        string? expected = metadataName is null ? null : prefix + metadataName;
        ulong? expectedAddress = null;
        if (expected is not null && map.SymbolAddress(expected) is ulong e)
        {
            expectedAddress = e;
        }
        else
        {
            expected = null;
        }
        string? finding = null;
        if (owner != KernelOwner.KernelText)
        {
            finding = owner switch
            {
                KernelOwner.NoModule => "outside kernel text, in no module (code of a hidden module?)",
                KernelOwner.HiddenModule => $"outside kernel text, in module {module!.Name}, which is not on the module list",
                KernelOwner.Module => $"outside kernel text, in module {module!.Name}",
                _ => "outside kernel text, in the kernel image's data",
            };
        }
        else if (expectedAddress is ulong want && want != handler)
        {
            finding = $"points at {symbol ?? $"0x{handler:X}"} instead of {expected}";
        }
        bool hooked = finding is not null;
        return new LinuxSyscallSlot(table, tableAddress, index, name, handler, symbol, owner, module?.Name, hooked,
            hooked ? expected : null, hooked ? expectedAddress : null, finding);
    }

    /// <summary>
    /// System-call names by 64-bit number from the ftrace metadata (CONFIG_FTRACE_SYSCALLS): syscalls_metadata is an
    /// array of struct syscall_metadata pointers filled at boot from the then-pristine table; name is "sys_kill".
    /// </summary>
    private static string[]? MetadataNames(LinuxContext context, int limit, List<string> notes)
    {
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("syscalls_metadata", out ulong pointer) || !k.TryReadUInt64(pointer, out ulong array) || array == 0)
        {
            notes.Add("syscalls_metadata (CONFIG_FTRACE_SYSCALLS) not available: original handlers are named only for slots that still hold them");
            return null;
        }
        int nameOffset = context.Types.TryGetOffset("syscall_metadata", "name", out int o) ? o : 0;
        var names = new string[limit];
        for (int i = 0; i < limit; i++)
        {
            if (!k.TryReadUInt64(array + ((ulong)i * 8), out ulong meta))
            {
                break;
            }
            if (meta != 0 && k.TryReadUInt64(meta + (ulong)nameOffset, out ulong namePointer) && k.ReadCString(namePointer, 64) is string full
                && full.StartsWith("sys_", StringComparison.Ordinal))
            {
                names[i] = full[4..];
            }
        }
        return names;
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register(new PluginInfo("linux.check_syscall",
            "Every system-call table slot (64-bit and 32-bit) resolved to its symbol or module; slots outside kernel text flagged with the handler they should hold",
            TargetOs.Linux), (c, a, ct) => Run(c.Linux(ct), ct));
        PluginRegistry.Register(new PluginInfo("linux.check_modules",
            "Modules on which the module list, sysfs and the module-area scan disagree (hidden modules), with base and size",
            TargetOs.Linux), (c, a, ct) => CheckModules(c.Linux(ct), ct));
    }

    /// <summary>linux.check_modules: the rows of linux.hidden_modules where the sources disagree.</summary>
    public static RowsReport<LinuxModuleView> CheckModules(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxModuleView> modules, List<string> notes) = LinuxHiddenModules.Compare(context, ct);
        return new RowsReport<LinuxModuleView>("linux.check_modules", [.. modules.Where(m => m.Finding is not null)], notes);
    }
}
