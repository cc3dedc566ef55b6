using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// The user half of a process: executable and DLL images (PE headers at their bases), the PEB, the process parameters
/// (image path, command line, environment), the loader data with its three module lists, injected regions and
/// hollowing. Every region mapped is recorded in <see cref="WindowsLaidOutProcess.Regions"/> for the VAD layout.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>Base of the executable image in every process (images are relocated per process on Windows; one base keeps the manifest readable).</summary>
    public const ulong ExecutableBase = 0x00007FF71E400000;

    /// <summary>First DLL base; DLLs follow at 2 MiB steps.</summary>
    public const ulong DllBase = 0x00007FFBA0000000;

    /// <summary>The PEB's page.</summary>
    public const ulong PebAddress = 0x000000E54A3F0000;

    /// <summary>The process heap holding the parameters and the loader data.</summary>
    public const ulong ProcessHeap = 0x000001F2C8A00000;

    private const ulong HeapSize = 0x40000;

    /// <summary>The bytes written into "shellcode" injections: an x64 position-independent prologue (cld; and rsp,-16; call +0xC0; push r9; push r8; push rdx; push rcx; push rsi; xor rdx,rdx; mov rdx,gs:[rdx+0x60]).</summary>
    public static readonly byte[] Shellcode =
    [
        0xFC, 0x48, 0x83, 0xE4, 0xF0, 0xE8, 0xC0, 0x00, 0x00, 0x00, 0x41, 0x51, 0x41, 0x50, 0x52, 0x51,
        0x56, 0x48, 0x31, 0xD2, 0x65, 0x48, 0x8B, 0x52, 0x60,
    ];

    /// <summary>The environment a process gets when the scenario gives none.</summary>
    public static IReadOnlyList<string> DefaultEnvironment(WindowsScenarioProcess p) =>
    [
        @"ALLUSERSPROFILE=C:\ProgramData",
        "COMPUTERNAME=WS-ALICE",
        "NUMBER_OF_PROCESSORS=2",
        "OS=Windows_NT",
        @"Path=C:\Windows\system32;C:\Windows;C:\Windows\System32\Wbem",
        @"SystemRoot=C:\Windows",
        @"TEMP=C:\Windows\TEMP",
        "USERNAME=" + (p.Pid < 1000 ? "SYSTEM" : "alice"),
    ];

    /// <summary>DLLs a process gets when the scenario gives none.</summary>
    public static IReadOnlyList<ScenarioDll> DefaultDlls { get; } = [new("ntdll.dll"), new("kernel32.dll"), new("KernelBase.dll")];

    private ulong _heapNext;

    private ulong HeapAlloc(ProcessLayout p, int size)
    {
        ulong va = _heapNext;
        _heapNext = (_heapNext + (ulong)size + 15) & ~15UL;
        if (_heapNext > ProcessHeap + HeapSize)
        {
            throw new InvalidOperationException($"process {p.LaidOut.Pid}: heap full");
        }
        return va;
    }

    private static bool Executable(string protection) => protection.Contains("EXECUTE", StringComparison.Ordinal);

    private static bool Writable(string protection) => protection.Contains("READWRITE", StringComparison.Ordinal) || protection.Contains("WRITECOPY", StringComparison.Ordinal);

    /// <summary>Maps a user region with fresh pages and records it.</summary>
    public LaidOutRegion MapUserRegion(ProcessLayout p, ulong start, ulong size, RegionKind kind, string protection, string? fileName = null)
    {
        ulong end = start + ((size + Page - 1) & ~(ulong)(Page - 1)) - 1;
        _image.MapFresh(p.Dtb, start, end - start + 1, user: true, writable: Writable(protection), executable: Executable(protection));
        var region = new LaidOutRegion(start, end, kind, protection) { FileName = fileName };
        p.LaidOut.Regions.Add(region);
        return region;
    }

    /// <summary>A PE header for a module image at <paramref name="imageBase"/>.</summary>
    public static byte[] ModuleHeader(string name, ulong imageBase, uint size, bool dll)
        => new PeImageBuilder
        {
            ImageBase = imageBase,
            SizeOfImage = Math.Max(size, 0x3000),
            Characteristics = (ushort)(dll ? 0x2022 : 0x22),
            EntryPoint = 0x1000,
            PdbPath = Path.ChangeExtension(name, ".pdb"),
            GuidBytes = System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(name))[..16],   // stable per name
            Text = ModuleCode,
        }.Build();

    /// <summary>The .text section of module images: sub rsp,28h; xor ecx,ecx; call [rip+0xFF2]; add rsp,28h; ret; int3 padding.</summary>
    public static readonly byte[] ModuleCode =
    [
        0x48, 0x83, 0xEC, 0x28, 0x33, 0xC9, 0xFF, 0x15, 0xF2, 0x0F, 0x00, 0x00, 0x48, 0x83, 0xC4, 0x28,
        0xC3, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC,
    ];

    private void LayOutUserSpace(ProcessLayout p)
    {
        WindowsScenarioProcess s = p.Scenario;
        WindowsLaidOutProcess laid = p.LaidOut;
        ulong pml4 = p.Dtb;
        _heapNext = ProcessHeap;
        string imagePath = s.ImagePath ?? $@"C:\Windows\System32\{s.ImageFileName}";
        string commandLine = s.CommandLine ?? imagePath;
        laid.ImagePath = imagePath;
        laid.CommandLine = commandLine;
        laid.Hollow = s.Hollow;

        // The executable image (or what hollowing left in its place).
        const uint exeSize = 0x20000;
        byte[] exeHeader = ModuleHeader(s.ImageFileName, ExecutableBase, exeSize, dll: false);
        if (s.Hollow == HollowKind.Unmapped)
        {
            MapUserRegion(p, ExecutableBase, exeSize, RegionKind.Private, "PAGE_EXECUTE_READWRITE");
            laid.InjectedRegions.Add(ExecutableBase);
        }
        else
        {
            string file = s.Hollow == HollowKind.Remapped ? s.HollowedFrom ?? @"C:\Users\Public\payload.exe" : imagePath;
            MapUserRegion(p, ExecutableBase, exeSize, RegionKind.Image, "PAGE_EXECUTE_WRITECOPY", ToNtPath(file));
        }
        _image.WriteVa(pml4, ExecutableBase, exeHeader);
        laid.ImageBase = ExecutableBase;
        var modules = new List<LaidOutModule>
        {
            new(s.ImageFileName, imagePath, ExecutableBase, exeSize, true, false, true) { EntryPoint = ExecutableBase + 0x1000 },
        };
        IReadOnlyList<ScenarioDll> dlls = s.Dlls ?? DefaultDlls;
        for (int i = 0; i < dlls.Count; i++)
        {
            ScenarioDll d = dlls[i];
            ulong dllBase = d.Base ?? DllBase + (ulong)i * 0x200000;
            string path = d.Path ?? $@"C:\Windows\System32\{d.Name}";
            MapUserRegion(p, dllBase, d.Size, RegionKind.Image, "PAGE_EXECUTE_WRITECOPY", ToNtPath(path));
            _image.WriteVa(pml4, dllBase, ModuleHeader(d.Name, dllBase, d.Size, dll: true));
            modules.Add(new LaidOutModule(d.Name, path, dllBase, d.Size, d.InLoad, d.InInit, d.InMemory) { EntryPoint = dllBase + 0x1000 });
        }

        // Injected private memory.
        foreach (ScenarioInjection injection in s.Injected ?? [])
        {
            MapUserRegion(p, injection.Address, injection.Size, RegionKind.Private, injection.Protection);
            switch (injection.Content)
            {
                case "pe":
                    _image.WriteVa(pml4, injection.Address, ModuleHeader("payload.dll", injection.Address, injection.Size, dll: true));
                    break;
                case "shellcode":
                    _image.WriteVa(pml4, injection.Address, Shellcode);
                    break;
            }
            if (injection.Content != "zero" && Executable(injection.Protection))
            {
                laid.InjectedRegions.Add(injection.Address);
            }
        }

        // PEB, heap (parameters, environment, loader data).
        MapUserRegion(p, PebAddress, (ulong)SizeOf("_PEB"), RegionKind.Private, "PAGE_READWRITE");
        MapUserRegion(p, ProcessHeap, HeapSize, RegionKind.Private, "PAGE_READWRITE");
        laid.Peb = PebAddress;
        PutKernel(p.Eprocess, "_EPROCESS", "Peb", PebAddress);
        PutKernel(p.Eprocess, "_EPROCESS", "SectionBaseAddress", ExecutableBase);
        PutField(pml4, PebAddress, "_PEB", "ImageBaseAddress", ExecutableBase);
        PutField(pml4, PebAddress, "_PEB", "ProcessHeap", ProcessHeap);

        ulong parameters = HeapAlloc(p, SizeOf("_RTL_USER_PROCESS_PARAMETERS"));
        PutField(pml4, PebAddress, "_PEB", "ProcessParameters", parameters);
        PutField(pml4, parameters, "_RTL_USER_PROCESS_PARAMETERS", "MaximumLength", (ulong)SizeOf("_RTL_USER_PROCESS_PARAMETERS"));
        PutField(pml4, parameters, "_RTL_USER_PROCESS_PARAMETERS", "Length", (ulong)SizeOf("_RTL_USER_PROCESS_PARAMETERS"));
        PutField(pml4, parameters, "_RTL_USER_PROCESS_PARAMETERS", "Flags", 1);   // normalised: pointers are addresses
        PutUserString(p, parameters + (ulong)Off("_RTL_USER_PROCESS_PARAMETERS", "ImagePathName"), imagePath);
        PutUserString(p, parameters + (ulong)Off("_RTL_USER_PROCESS_PARAMETERS", "CommandLine"), commandLine);
        PutUserString(p, parameters + (ulong)Off("_RTL_USER_PROCESS_PARAMETERS", "CurrentDirectory.DosPath"), @"C:\Windows\system32\");
        IReadOnlyList<string> environment = s.Environment ?? DefaultEnvironment(s);
        byte[] block = Encoding.Unicode.GetBytes(string.Concat(environment.Select(e => e + "\0")) + "\0");
        ulong env = HeapAlloc(p, block.Length);
        _image.WriteVa(pml4, env, block);
        PutField(pml4, parameters, "_RTL_USER_PROCESS_PARAMETERS", "Environment", env);
        if (Has("_RTL_USER_PROCESS_PARAMETERS", "EnvironmentSize"))
        {
            PutField(pml4, parameters, "_RTL_USER_PROCESS_PARAMETERS", "EnvironmentSize", (ulong)block.Length);
        }
        laid.Environment.AddRange(environment);

        // Loader data: _PEB_LDR_DATA and one _LDR_DATA_TABLE_ENTRY per module on at least one list.
        ulong ldr = HeapAlloc(p, SizeOf("_PEB_LDR_DATA"));
        PutField(pml4, PebAddress, "_PEB", "Ldr", ldr);
        PutField(pml4, ldr, "_PEB_LDR_DATA", "Length", (ulong)SizeOf("_PEB_LDR_DATA"));
        PutField(pml4, ldr, "_PEB_LDR_DATA", "Initialized", 1);
        var entries = new List<(LaidOutModule Module, ulong Entry)>();
        foreach (LaidOutModule m in modules)
        {
            if (!m.InLoad && !m.InInit && !m.InMemory)
            {
                laid.Modules.Add(m);
                continue;
            }
            ulong entry = HeapAlloc(p, SizeOf("_LDR_DATA_TABLE_ENTRY"));
            PutField(pml4, entry, "_LDR_DATA_TABLE_ENTRY", "DllBase", m.Base);
            PutField(pml4, entry, "_LDR_DATA_TABLE_ENTRY", "EntryPoint", m.EntryPoint);
            PutField(pml4, entry, "_LDR_DATA_TABLE_ENTRY", "SizeOfImage", m.Size);
            PutUserString(p, entry + (ulong)Off("_LDR_DATA_TABLE_ENTRY", "FullDllName"), m.Path);
            PutUserString(p, entry + (ulong)Off("_LDR_DATA_TABLE_ENTRY", "BaseDllName"), m.Name);
            LaidOutModule withEntry = m with { LdrEntry = entry };
            laid.Modules.Add(withEntry);
            entries.Add((withEntry, entry));
        }
        Link(pml4, ldr, "InLoadOrderModuleList", "InLoadOrderLinks", entries.Where(e => e.Module.InLoad).Select(e => e.Entry).ToList());
        Link(pml4, ldr, "InMemoryOrderModuleList", "InMemoryOrderLinks", entries.Where(e => e.Module.InMemory).Select(e => e.Entry).ToList());
        Link(pml4, ldr, "InInitializationOrderModuleList", "InInitializationOrderLinks", entries.Where(e => e.Module.InInit).Select(e => e.Entry).ToList());
        // Entries left off a list point at themselves in it.
        foreach ((LaidOutModule m, ulong entry) in entries)
        {
            foreach ((bool on, string links) in new[] { (m.InLoad, "InLoadOrderLinks"), (m.InMemory, "InMemoryOrderLinks"), (m.InInit, "InInitializationOrderLinks") })
            {
                if (!on)
                {
                    ulong self = entry + (ulong)Off("_LDR_DATA_TABLE_ENTRY", links);
                    _image.Write64(pml4, self, self);
                    _image.Write64(pml4, self + 8, self);
                }
            }
        }
    }

    /// <summary>Links <paramref name="entries"/> into the circular list headed at _PEB_LDR_DATA.<paramref name="head"/>.</summary>
    private void Link(ulong pml4, ulong ldr, string head, string links, IReadOnlyList<ulong> entries)
    {
        ulong headVa = ldr + (ulong)Off("_PEB_LDR_DATA", head);
        int linkOffset = Off("_LDR_DATA_TABLE_ENTRY", links);
        var nodes = new List<ulong> { headVa };
        nodes.AddRange(entries.Select(e => e + (ulong)linkOffset));
        for (int i = 0; i < nodes.Count; i++)
        {
            _image.Write64(pml4, nodes[i], nodes[(i + 1) % nodes.Count]);
            _image.Write64(pml4, nodes[i] + 8, nodes[(i + nodes.Count - 1) % nodes.Count]);
        }
    }

    /// <summary>A _UNICODE_STRING in user memory with its buffer on the process heap.</summary>
    public void PutUserString(ProcessLayout p, ulong at, string text)
    {
        byte[] bytes = PhysicalImage.Utf16z(text);
        ulong buffer = HeapAlloc(p, bytes.Length);
        _image.WriteVa(p.Dtb, buffer, bytes);
        PutUnicodeString(p.Dtb, at, buffer, text);
    }

    /// <summary>C:\x as the kernel names the file of a section (\Device\HarddiskVolume3\x).</summary>
    public static string ToNtPath(string path)
        => path.Length > 2 && path[1] == ':' ? @"\Device\HarddiskVolume3" + path[2..] : path;
}
