namespace CloudMem.ImageBuilder;

/// <summary>
/// Kernel modules: one _KLDR_DATA_TABLE_ENTRY (Windows 7: _LDR_DATA_TABLE_ENTRY) per driver in a pool allocation tagged
/// 'MmLd', linked on PsLoadedModuleList through InLoadOrderLinks in scenario order (unlinked drivers keep their
/// allocation and point at themselves), with DllBase, EntryPoint, SizeOfImage, FullDllName and BaseDllName. Each
/// driver's PE header is mapped at its base (the rest of its image is not mapped); ntoskrnl.exe is the kernel image itself.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>First base given to a driver without one; later drivers follow at 64 KiB granularity.</summary>
    public const ulong DriverBase = 0xFFFFF80650000000;

    /// <summary>The drivers an image gets when the scenario names none.</summary>
    public static IReadOnlyList<ScenarioDriver> DefaultDrivers { get; } =
    [
        new("ntoskrnl.exe") { Path = @"\SystemRoot\system32\ntoskrnl.exe" },
        new("hal.dll") { Path = @"\SystemRoot\system32\hal.dll" },
        new("kdcom.dll") { Path = @"\SystemRoot\system32\kdcom.dll", Size = 0xB000 },
        new("CLFS.SYS") { Path = @"\SystemRoot\System32\drivers\CLFS.SYS", Size = 0x66000 },
        new("Ntfs.sys") { Path = @"\SystemRoot\System32\Drivers\Ntfs.sys", Size = 0x2D6000 },
        new("tcpip.sys") { Path = @"\SystemRoot\System32\drivers\tcpip.sys", Size = 0x2F0000 },
    ];

    /// <summary>The ISF structure of a kernel module entry on this build.</summary>
    private string ModuleEntryType => types.FindStruct("_KLDR_DATA_TABLE_ENTRY") is not null ? "_KLDR_DATA_TABLE_ENTRY" : "_LDR_DATA_TABLE_ENTRY";

    partial void LayOutDrivers(IReadOnlyList<ScenarioDriver>? drivers, WindowsImageManifest manifest)
    {
        if (!types.Symbols.TryGetValue("PsLoadedModuleList", out ulong headRva))
        {
            return;
        }
        string entryType = ModuleEntryType;
        int entrySize = SizeOf(entryType);
        int links = Off(entryType, "InLoadOrderLinks");
        ulong head = KernelBase + headRva;
        Span<byte> sizeOfImage = stackalloc byte[4];
        _image.ReadVa(Dtb, KernelBase + PeImageBuilder.OptionalHeader + 56, sizeOfImage);
        uint kernelSize = BitConverter.ToUInt32(sizeOfImage);
        ulong next = DriverBase;
        var listed = new List<ulong>();
        foreach (ScenarioDriver d in drivers ?? DefaultDrivers)
        {
            bool kernel = d.Name.Equals("ntoskrnl.exe", StringComparison.OrdinalIgnoreCase) && d.Base is null;
            ulong imageBase = kernel ? KernelBase : d.Base ?? next;
            uint size = kernel ? kernelSize : d.Size;
            string path = d.Path ?? $@"\SystemRoot\System32\drivers\{d.Name}";
            if (!kernel)
            {
                byte[] header = ModuleHeader(d.Name, imageBase, size, dll: false);
                int mapped = (int)Math.Min((ulong)header.Length, ((ulong)size + Page - 1) & ~(ulong)(Page - 1));
                _image.MapFresh(Dtb, imageBase, (ulong)mapped, user: false, writable: false, executable: true);
                _image.WriteVa(Dtb, imageBase, header.AsSpan(0, mapped));
                if (d.Base is null)
                {
                    next = (imageBase + size + 0xFFFF) & ~0xFFFFUL;
                }
            }
            ulong entry = AllocatePool(Tag("MmLd"), entrySize);
            PutKernel(entry, entryType, "DllBase", imageBase);
            PutKernel(entry, entryType, "EntryPoint", imageBase + 0x1000);
            PutKernel(entry, entryType, "SizeOfImage", size);
            if (Has(entryType, "LoadCount"))
            {
                PutKernel(entry, entryType, "LoadCount", 1);
            }
            PutKernelUnicodeString(entry + (ulong)Off(entryType, "FullDllName"), path);
            PutKernelUnicodeString(entry + (ulong)Off(entryType, "BaseDllName"), d.Name);
            ulong self = entry + (ulong)links;
            _image.Write64(Dtb, self, self);
            _image.Write64(Dtb, self + 8, self);
            if (!d.Unlinked)
            {
                listed.Add(self);
            }
            manifest.Drivers.Add(new LaidOutDriver(d.Name, path, imageBase, size, !d.Unlinked, entry));
        }
        var nodes = new List<ulong> { head };
        nodes.AddRange(listed);
        for (int i = 0; i < nodes.Count; i++)
        {
            _image.Write64(Dtb, nodes[i], nodes[(i + 1) % nodes.Count]);
            _image.Write64(Dtb, nodes[i] + 8, nodes[(i + nodes.Count - 1) % nodes.Count]);
        }
    }
}
