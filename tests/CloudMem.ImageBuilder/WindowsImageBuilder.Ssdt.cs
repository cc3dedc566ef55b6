namespace CloudMem.ImageBuilder;

/// <summary>
/// The system service table as an x64 kernel keeps it: KiServiceTable holds one 32-bit entry per service, the target's
/// offset from the table shifted left by 4 (signed, so a target lies within 128 MiB of the table) with the count of
/// stack arguments in the low 4 bits; KiServiceLimit holds the count; KeServiceDescriptorTable (Base, Count, Limit,
/// Number) points at both. Entries target the kernel's Nt* functions (ISF symbols in address order); hooked entries
/// target an offset in a driver.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    private List<(string Name, ulong Rva)> NtFunctions(int count)
    {
        ulong table = types.Symbols.TryGetValue("KiServiceTable", out ulong rva) ? rva : throw new InvalidOperationException("ISF has no KiServiceTable");
        return [.. types.Symbols.Where(s => s.Key.StartsWith("Nt", StringComparison.Ordinal) && s.Key.Length > 2 && char.IsUpper(s.Key[2]) && !s.Key.StartsWith("NtBuild", StringComparison.Ordinal) && s.Key != "NtGlobalFlag"
                && (long)s.Value - (long)table is > -(1L << 27) and < 1L << 27)
            .GroupBy(s => s.Value).Select(g => (Name: g.Select(s => s.Key).Order(StringComparer.Ordinal).First(), Rva: g.Key))
            .OrderBy(s => s.Rva).Take(count)];
    }

    /// <summary>The highest kernel RVA the table uses (so the kernel image is mapped that far).</summary>
    private ulong ServiceTableHighest(ScenarioServiceTable table)
    {
        ulong highest = Math.Max(types.Symbols["KiServiceTable"] + (ulong)table.Count * 4, types.Symbols["KiServiceLimit"]);
        if (types.Symbols.TryGetValue("KeServiceDescriptorTable", out ulong descriptor))
        {
            highest = Math.Max(highest, descriptor + 0x20);
        }
        return Math.Max(highest, NtFunctions(table.Count).Max(f => f.Rva));
    }

    private List<LaidOutServiceEntry> LayOutServiceTable(ScenarioServiceTable table, WindowsImageManifest manifest)
    {
        ulong tableVa = KernelBase + types.Symbols["KiServiceTable"];
        List<(string Name, ulong Rva)> functions = NtFunctions(table.Count);
        if (functions.Count < table.Count)
        {
            throw new InvalidOperationException($"ISF has {functions.Count} Nt* functions near KiServiceTable, fewer than {table.Count}");
        }
        var laid = new List<LaidOutServiceEntry>();
        for (int i = 0; i < table.Count; i++)
        {
            ScenarioSsdtHook? hook = table.Hooks.FirstOrDefault(h => h.Index == i);
            LaidOutDriver? driver = hook is null ? null : manifest.Drivers.FirstOrDefault(d => d.Name.Equals(hook.Driver, StringComparison.OrdinalIgnoreCase))
                ?? throw new InvalidOperationException($"SSDT hook {i}: no driver {hook.Driver}");
            ulong target = driver is null ? KernelBase + functions[i].Rva : driver.Base + hook!.Offset;
            long offset = (long)target - (long)tableVa;
            if (offset is <= -(1L << 27) or >= 1L << 27)
            {
                throw new InvalidOperationException($"SSDT entry {i}: target 0x{target:X} is not within 128 MiB of KiServiceTable 0x{tableVa:X}");
            }
            _image.Write32(Dtb, tableVa + (ulong)i * 4, (uint)(int)((offset << 4) | (uint)(i % 5)));
            laid.Add(new LaidOutServiceEntry(i, target, driver is null ? functions[i].Name : null, driver?.Name));
        }
        _image.Write32(Dtb, KernelBase + types.Symbols["KiServiceLimit"], (uint)table.Count);
        if (types.Symbols.TryGetValue("KeServiceDescriptorTable", out ulong descriptor))
        {
            _image.Write64(Dtb, KernelBase + descriptor, tableVa);
            _image.Write32(Dtb, KernelBase + descriptor + 0x10, (uint)table.Count);
        }
        return laid;
    }

    /// <summary>
    /// Notification callbacks: per callback an _EX_CALLBACK_ROUTINE_BLOCK (rundown reference, function at +8, context)
    /// in a pool allocation, and the array's next free slot an _EX_FAST_REF to it (reference count 0xF in the low bits).
    /// </summary>
    private List<LaidOutCallback> LayOutCallbacks(IReadOnlyList<ScenarioCallback> callbacks, WindowsImageManifest manifest)
    {
        var laid = new List<LaidOutCallback>();
        foreach (ScenarioCallback callback in callbacks)
        {
            LaidOutDriver driver = manifest.Drivers.FirstOrDefault(d => d.Name.Equals(callback.Driver, StringComparison.OrdinalIgnoreCase))
                ?? throw new InvalidOperationException($"callback: no driver {callback.Driver}");
            int slot = laid.Count(c => c.Array == callback.Array);
            ulong block = AllocatePool(Tag("Cbrb"), 0x18);
            ulong function = driver.Base + callback.Offset;
            _image.Write64(Dtb, block + 8, function);
            _image.Write64(Dtb, KernelBase + types.Symbols[callback.Array] + (ulong)slot * 8, block | 0xF);
            laid.Add(new LaidOutCallback(callback.Array, slot, block, function, driver.Name));
        }
        return laid;
    }
}
