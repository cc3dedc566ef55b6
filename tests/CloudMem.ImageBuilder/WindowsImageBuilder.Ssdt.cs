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
            ulong function = driver.Base + callback.Offset;
            if (callback.Array == RegistryCallbackList)
            {
                laid.Add(new LaidOutCallback(callback.Array, slot, RegistryCallback(function, slot), function, driver.Name));
                continue;
            }
            ulong block = AllocatePool(Tag("Cbrb"), 0x18);
            _image.Write64(Dtb, block + 8, function);
            _image.Write64(Dtb, KernelBase + types.Symbols[callback.Array] + (ulong)slot * 8, block | 0xF);
            laid.Add(new LaidOutCallback(callback.Array, slot, block, function, driver.Name));
        }
        List<ulong> entries = [.. laid.Where(c => c.Array == RegistryCallbackList).Select(c => c.Block)];
        if (entries.Count > 0)
        {
            ulong head = KernelBase + types.Symbols[RegistryCallbackList];
            var nodes = new List<ulong> { head };
            nodes.AddRange(entries);
            for (int i = 0; i < nodes.Count; i++)
            {
                _image.Write64(Dtb, nodes[i], nodes[(i + 1) % nodes.Count]);
                _image.Write64(Dtb, nodes[i] + 8, nodes[(i + nodes.Count - 1) % nodes.Count]);
            }
            _image.Write32(Dtb, KernelBase + types.Symbols["CmpCallBackCount"], (uint)entries.Count);
        }
        return laid;
    }
}

/// <summary>
/// Driver objects: an object allocation tagged 'Driv' ("Dri\xF6", the protected form, before Windows 8) holding the
/// _DRIVER_OBJECT and its _DRIVER_EXTENSION, named in the name info, with Type 4, Size, DriverStart/DriverSize of its
/// module, DriverName and the 28 MajorFunction pointers.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>The majors a laid-out driver handles itself (the others go to IopInvalidDeviceRequest).</summary>
    public static readonly int[] HandledMajors = [0, 2, 3, 4, 14, 15, 18, 22, 23, 27];

    private List<LaidOutDriverObject> LayOutDriverObjects(IReadOnlyList<ScenarioDriverObject> objects, WindowsImageManifest manifest)
    {
        LaidOutDriver Module(string name) => manifest.Drivers.FirstOrDefault(d => d.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
            ?? throw new InvalidOperationException($"driver object: no driver {name}");
        ulong invalid = KernelBase + (types.Symbols.TryGetValue("IopInvalidDeviceRequest", out ulong rva) ? rva : 0x1000);
        int size = SizeOf("_DRIVER_OBJECT"), extension = SizeOf("_DRIVER_EXTENSION");
        uint tag = EffectiveVersion.Build < 9200 ? 0xF6697244 : Tag("Driv");
        var laid = new List<LaidOutDriverObject>();
        foreach (ScenarioDriverObject o in objects)
        {
            LaidOutDriver driver = Module(o.Driver);
            ulong body = AllocateObject(tag, "Driver", size + extension, name: o.Name[(o.Name.LastIndexOf('\\') + 1)..]);
            PutKernel(body, "_DRIVER_OBJECT", "Type", 4);
            PutKernel(body, "_DRIVER_OBJECT", "Size", (ulong)size);
            PutKernel(body, "_DRIVER_OBJECT", "DriverStart", driver.Base);
            PutKernel(body, "_DRIVER_OBJECT", "DriverSize", driver.Size);
            PutKernel(body, "_DRIVER_OBJECT", "DriverExtension", body + (ulong)size);
            PutKernel(body + (ulong)size, "_DRIVER_EXTENSION", "DriverObject", body);
            PutKernelUnicodeString(body + (ulong)Off("_DRIVER_OBJECT", "DriverName"), o.Name);
            var irps = new List<ulong>();
            var modules = new List<string?>();
            for (int major = 0; major < 28; major++)
            {
                ScenarioIrpHook? hook = o.Hooks.FirstOrDefault(h => h.Major == major);
                (ulong target, string? module) = hook switch
                {
                    { Driver: null } => (WriteHookCode(), (string?)null),
                    { } h => (Module(h.Driver).Base + h.Offset, Module(h.Driver).Name),
                    _ when HandledMajors.Contains(major) => (driver.Base + 0x1000 + (ulong)major * 0x10, driver.Name),
                    _ => (invalid, "ntoskrnl.exe"),
                };
                _image.Write64(Dtb, body + (ulong)Off("_DRIVER_OBJECT", "MajorFunction") + (ulong)major * 8, target);
                irps.Add(target);
                modules.Add(module);
            }
            laid.Add(new LaidOutDriverObject(body, _image.Translate(Dtb, body), o.Name, driver.Base, driver.Size, irps, modules));
        }
        return laid;
    }

    /// <summary>The registry callback list (CmRegisterCallbackEx): a scenario callback naming it is laid out as a list entry.</summary>
    public const string RegistryCallbackList = "CallbackListHead";

    /// <summary>
    /// A registry callback's list entry (CM_CALLBACK_CONTEXT_BLOCKEX, 'CMcb'): LIST_ENTRY at 0, cookie at 0x18, function
    /// at 0x28, altitude (_UNICODE_STRING) at 0x30. Linked by the caller.
    /// </summary>
    private ulong RegistryCallback(ulong function, int index)
    {
        ulong entry = AllocatePool(Tag("CMcb"), 0x50);
        _image.Write64(Dtb, entry + 0x18, 0x01D9D0A0C0000000UL + (ulong)index);     // the cookie: a time stamp-like value plus the index
        _image.Write64(Dtb, entry + 0x28, function);
        PutKernelUnicodeString(entry + 0x30, (385200 + index).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return entry;
    }

    /// <summary>Shellcode in a kernel pool allocation no module holds (a dispatch hook's target); its address.</summary>
    private ulong WriteHookCode()
    {
        ulong code = AllocatePool(Tag("Hook"), Shellcode.Length);
        _image.WriteVa(Dtb, code, Shellcode);
        return code;
    }
}
