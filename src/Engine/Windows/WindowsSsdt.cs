using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>A system service table entry (windows.ssdt).</summary>
/// <param name="Table">The table (KiServiceTable: the native services; win32k's shadow table is not read).</param>
/// <param name="Index">The service number.</param>
/// <param name="Address">Where the entry points.</param>
/// <param name="Module">The module holding the address: a module on PsLoadedModuleList, else one found only by the
/// 'MmLd' pool scan (then <paramref name="ModuleOnList"/> is false); null when none holds it.</param>
/// <param name="ModuleOnList">Whether <paramref name="Module"/> is on PsLoadedModuleList (null when no module holds the address).</param>
/// <param name="Symbol">The kernel symbol at the address (name, or name+0xOFFSET), for addresses in the kernel image.</param>
/// <param name="Hooked">The address is outside ntoskrnl and win32k*: the entry is hooked.</param>
/// <param name="Doubt">Why the entry is missing (the page of the table that did not read).</param>
public sealed record SsdtRow(string Table, int Index, [property: Hex] ulong Address, string? Module, bool? ModuleOnList, string? Symbol, bool Hooked, string? Doubt);

/// <summary>
/// windows.ssdt: KiServiceTable's KiServiceLimit entries. On x64 each entry is a signed 32-bit value whose upper 28 bits
/// are the target's offset from the table (the low 4 bits count the stack arguments); the target is resolved to the
/// module holding it (PsLoadedModuleList, else the 'MmLd' pool scan, which names a hidden driver) and, in the kernel
/// image, to the nearest ISF symbol at or below it. An entry outside ntoskrnl and win32k is flagged as hooked.
/// </summary>
public static class WindowsSsdt
{
#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.ssdt",
            "System service table (KiServiceTable) entries resolved to module and kernel symbol; entries outside ntoskrnl/win32k flagged as hooked",
            TargetOs.Windows),
            (c, a, ct) => Ssdt(c.Windows(ct), ct, c.Progress));

    /// <summary>windows.ssdt.</summary>
    public static RowsReport<SsdtRow> Ssdt(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (!kernel.TryGetSymbol("KiServiceTable", out ulong table) || !kernel.TryGetSymbol("KiServiceLimit", out ulong limitVa))
        {
            throw new KernelNotFoundException($"{kernel.Types.Source} has no KiServiceTable or KiServiceLimit symbol");
        }
        AddressSpace space = kernel.Kernel;
        var rows = new List<SsdtRow>();
        (List<WindowsModule> modules, List<string> notes) = WindowsModules.List(kernel, ct);
        if (!space.TryReadUInt32(limitVa, out uint limit))
        {
            space.TryTranslate(limitVa, out _, out TranslationFault fault);
            notes.Add($"KiServiceLimit at 0x{limitVa:X} does not read ({fault}); no entry can be listed");
            return new RowsReport<SsdtRow>("windows.ssdt", rows, notes);
        }
        if (limit > AnalysisLimits.Default.MaxServiceTableEntries)
        {
            notes.Add($"KiServiceLimit {limit} is above the limit of {AnalysisLimits.Default.MaxServiceTableEntries}; not a service count (garbage or wrong symbols)");
            return new RowsReport<SsdtRow>("windows.ssdt", rows, notes);
        }
        var owners = new KernelAddressOwners(kernel, modules, ct, progress);
        for (int i = 0; i < limit; i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong entryVa = table + (ulong)i * 4;
            if (!space.TryReadUInt32(entryVa, out uint raw))
            {
                space.TryTranslate(entryVa, out _, out TranslationFault fault);
                rows.Add(new SsdtRow("KiServiceTable", i, 0, null, null, null, false, $"entry at 0x{entryVa:X} does not read ({fault})"));
                continue;
            }
            ulong target = (ulong)((long)table + ((int)raw >> 4));
            (string? module, bool? onList, string? symbol, bool inKernel) = owners.Resolve(target);
            bool trusted = inKernel || (onList == true && module?.StartsWith("win32k", StringComparison.OrdinalIgnoreCase) == true);
            rows.Add(new SsdtRow("KiServiceTable", i, target, module, onList, symbol, !trusted, null));
        }
        notes.Add("win32k's shadow table (W32pServiceTable) is not read: it lives in session space, mapped only in GUI processes");
        return new RowsReport<SsdtRow>("windows.ssdt", rows, notes);
    }

    /// <summary>
    /// Who holds a kernel address: a module on PsLoadedModuleList, else a module entry only the 'MmLd' pool scan finds (a
    /// hidden driver; the scan runs once, on the first address no listed module holds), and in the kernel image the
    /// nearest ISF symbol at or below it.
    /// </summary>
    internal sealed class KernelAddressOwners(WindowsKernel kernel, List<WindowsModule> modules, CancellationToken ct, IProgressSink? progress)
    {
        private KernelSymbols? _symbols;   // built on the first address inside the kernel image (a sort of every symbol)
        private List<WindowsScannedModule>? _hidden;

        /// <summary>The module (null: none), whether it is listed (null: no module), the kernel symbol, and whether the address is in the kernel image.</summary>
        public (string? Module, bool? OnList, string? Symbol, bool InKernel) Resolve(ulong va)
        {
            if (modules.FirstOrDefault(m => va >= m.Base && va - m.Base < m.Size) is { } listed)
            {
                bool inKernel = listed.Base == kernel.KernelBase;
                return (listed.Name, true, inKernel ? (_symbols ??= new KernelSymbols(kernel)).Name(va) : null, inKernel);
            }
            _hidden ??= [.. WindowsModules.ModScan(kernel, ct, progress).Rows.Where(m => !m.OnList)];
            return _hidden.FirstOrDefault(m => va >= m.Base && va - m.Base < m.Size) is { } hidden ? (hidden.Name, false, null, false) : (null, null, null, false);
        }
    }

    /// <summary>The kernel's ISF symbols by address, for naming an address as symbol or symbol+0xOFFSET.</summary>
    private sealed class KernelSymbols
    {
        private readonly ulong[] _rvas;
        private readonly string[] _names;
        private readonly ulong _base;

        public KernelSymbols(WindowsKernel kernel)
        {
            _base = kernel.KernelBase;
            KeyValuePair<string, ulong>[] sorted = [.. kernel.Types.Symbols];
            Array.Sort(sorted, static (a, b) => a.Value != b.Value ? a.Value.CompareTo(b.Value) : string.CompareOrdinal(a.Key, b.Key));
            _rvas = new ulong[sorted.Length];
            _names = new string[sorted.Length];
            for (int i = 0; i < sorted.Length; i++)
            {
                (_names[i], _rvas[i]) = (sorted[i].Key, sorted[i].Value);
            }
        }

        public string? Name(ulong address)
        {
            ulong rva = address - _base;
            int i = Array.BinarySearch(_rvas, rva);
            if (i < 0)
            {
                i = ~i - 1;
            }
            if (i < 0)
            {
                return null;
            }
            // Several symbols can share an address (stubs the linker folded): prefer a service's Nt name, then the first.
            int first = i;
            while (first > 0 && _rvas[first - 1] == _rvas[i])
            {
                first--;
            }
            int best = first;
            for (int j = first; j < _rvas.Length && _rvas[j] == _rvas[i]; j++)
            {
                if (_names[j].StartsWith("Nt", StringComparison.Ordinal))
                {
                    best = j;
                    break;
                }
            }
            return _rvas[best] == rva ? _names[best] : $"{_names[best]}+0x{rva - _rvas[best]:X}";
        }
    }
}
