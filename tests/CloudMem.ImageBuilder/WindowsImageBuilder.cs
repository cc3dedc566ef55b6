using System.Text;
using CloudMem.Engine.Symbols;

namespace CloudMem.ImageBuilder;

/// <summary>
/// A synthetic x64 Windows physical image laid out with a real kernel's ISF layouts: 4-level page tables with a
/// self-referencing PML4 entry, the kernel image (a minimal PE with the ISF's RSDS record) mapped with 2 MiB pages, a
/// kernel pool (physically contiguous 64 KiB chunks, scattered) holding the objects (_EPROCESS with its pool and object
/// headers, ...), and per process a user address space with the PEB, process parameters, loader lists and module
/// images. Other parts (tokens, threads, handles, VADs, drivers) are laid out by the partial methods in the sibling
/// files. Every field is written at the ISF's offset; nothing is hard-coded per build.
/// </summary>
public sealed partial class WindowsImageBuilder(TypeModel types, string guid, uint age)
{
    private const int Page = PhysicalImage.Page;
    private const ulong TwoMiB = PhysicalImage.TwoMiB;
    private const int PoolChunkPages = 16;

    /// <summary>The PDB path written in the RSDS record (Windows kernels record the bare file name).</summary>
    public string PdbPath { get; init; } = "ntkrnlmp.pdb";

    /// <summary>Size of the raw image.</summary>
    public long ImageSize { get; init; } = 64 << 20;

    /// <summary>Index of the self-referencing PML4 entry (Windows 7's fixed 0x1ED by default).</summary>
    public int SelfRefIndex { get; init; } = 0x1ED;

    /// <summary>Virtual base of the kernel image (2 MiB aligned).</summary>
    public ulong KernelBase { get; init; } = 0xFFFFF8034A200000;

    /// <summary>Virtual base of the kernel pool.</summary>
    public ulong HeapBase { get; init; } = 0xFFFFA50C12340000;

    /// <summary>Physical base of the kernel image (2 MiB aligned).</summary>
    public ulong KernelPhysical { get; init; } = 0x400000;

    /// <summary>Physical address of the kernel's PML4 (the System process's DTB).</summary>
    public ulong Dtb { get; init; } = 0x1AA000;

    /// <summary>
    /// Physical address of the x64 low stub (PROCESSOR_START_BLOCK) Windows leaves in the first megabyte: a near jump,
    /// the kernel's CR3 (<see cref="Dtb"/>) at 0xA0 and a kernel entry address (inside the kernel image) at 0x70.
    /// Null: no stub (discovery falls back to scanning physical memory).
    /// </summary>
    public ulong? LowStub { get; init; } = 0x13000;

    public TypeModel Types => types;

    /// <summary>
    /// Windows version written into KUSER_SHARED_DATA and NtBuildNumber (null: the version of a known table from
    /// <see cref="KnownVersions"/>, else 10.0.19041, or 6.1.7601 when the ISF's _KUSER_SHARED_DATA has no NtBuildNumber).
    /// </summary>
    public (uint Major, uint Minor, uint Build)? Version { get; init; }

    /// <summary>Versions of the kernels whose tables ship in shared/symbols/windows (its README's table).</summary>
    public static IReadOnlyDictionary<string, (uint Major, uint Minor, uint Build)> KnownVersions { get; } = new Dictionary<string, (uint, uint, uint)>
    {
        ["339E74133576439CBCDF7E0229DA3773"] = (6, 1, 7601),
        ["169C65213E3E42DDBEB4E3AC66312B82"] = (6, 3, 9600),
        ["DBBC830E3E9A48FDA25A2144C146930E"] = (10, 0, 14393),
        ["1806D020A6E46538D7AC3325FAC114D8"] = (10, 0, 17763),
        ["606FF669409B00F7FC8C61A9C1670129"] = (10, 0, 19041),
        ["879AD95F3461091BB6318FA98072AD8E"] = (10, 0, 20348),
        ["0CE4A95C0CD782A7596B034D8648E585"] = (10, 0, 22000),
    };

    /// <summary>The version this image is laid out as.</summary>
    public (uint Major, uint Minor, uint Build) EffectiveVersion
        => Version ?? (KnownVersions.TryGetValue(guid.ToUpperInvariant(), out var known) ? known
            : Has("_KUSER_SHARED_DATA", "NtBuildNumber") ? (10u, 0u, 19041u) : (6u, 1u, 7601u));

    /// <summary>The moment the image pretends to be captured (KUSER_SHARED_DATA.SystemTime).</summary>
    public DateTime SystemTime { get; init; } = new(2024, 7, 7, 11, 0, 0, DateTimeKind.Utc);

    /// <summary>KUSER_SHARED_DATA's fixed kernel address (read-only to user mode at 0x7FFE0000).</summary>
    public const ulong KUserSharedData = 0xFFFFF78000000000;

    // Build state.
    private PhysicalImage _image = null!;
    private ulong _poolNext, _poolEnd, _poolVa;
    private WindowsImageManifest? _manifest;

    /// <summary>The physical image being built (valid during and after <see cref="Build(WindowsScenario)"/>).</summary>
    public PhysicalImage Image => _image;

    /// <summary>A typical scenario: System, smss, csrss, services, svchost, winword with a powershell child.</summary>
    public static IReadOnlyList<WindowsScenarioProcess> TypicalScenario()
    {
        var boot = new DateTime(2024, 7, 7, 9, 30, 0, DateTimeKind.Utc);
        return
        [
            new(4, 0, "System", boot),
            new(348, 4, "smss.exe", boot.AddSeconds(2)),
            new(452, 440, "csrss.exe", boot.AddSeconds(5)),
            new(612, 520, "services.exe", boot.AddSeconds(7)),
            new(780, 612, "svchost.exe", boot.AddSeconds(9.5)),
            new(5120, 3980, "WINWORD.EXE", boot.AddMinutes(42)),
            new(6044, 5120, "powershell.exe", boot.AddMinutes(43).AddTicks(1234567)),
        ];
    }

    /// <summary>
    /// The attack scenario every Windows plugin is tested on: the typical processes with command lines, environment,
    /// DLLs (one unlinked from all PEB lists, one from the load-order list only), threads (one starting in injected
    /// memory), handles, an injected RWX region with a PE header and one with shellcode, a hollowed svchost, an
    /// unlinked process, and drivers (one unlinked).
    /// </summary>
    public static WindowsScenario AttackScenario()
    {
        var boot = new DateTime(2024, 7, 7, 9, 30, 0, DateTimeKind.Utc);
        IReadOnlyList<WindowsScenarioProcess> typical = TypicalScenario();
        WindowsScenarioProcess word = typical[5] with
        {
            ImagePath = @"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
            CommandLine = "\"C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE\" /n \"C:\\Users\\alice\\Downloads\\invoice.docm\"",
            Dlls =
            [
                new("ntdll.dll"), new("kernel32.dll"), new("KernelBase.dll"), new("VBE7.DLL") { Path = @"C:\Program Files\Common Files\microsoft shared\VBA\VBA7.1\VBE7.DLL" },
                new("evil.dll") { Path = @"C:\Users\alice\AppData\Local\Temp\evil.dll", InLoad = false, InInit = false, InMemory = false },
            ],
            Threads = [new(5124) { StartModule = "WINWORD.EXE", StartOffset = 0x1010 }, new(5128) { StartModule = "VBE7.DLL", StartOffset = 0x2200 }],
            Handles =
            [
                new("File") { Name = @"\Device\HarddiskVolume3\Users\alice\Downloads\invoice.docm", GrantedAccess = 0x120089 },
                new("Process") { TargetPid = 6044, GrantedAccess = 0x1FFFFF },
                new("Key") { Name = @"\REGISTRY\USER\S-1-5-21-1004336348-1177238915-682003330-1001\SOFTWARE\Microsoft\Office", GrantedAccess = 0x20019 },
            ],
        };
        WindowsScenarioProcess powershell = typical[6] with
        {
            ImagePath = @"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            CommandLine = "powershell.exe -NoP -W Hidden -Enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
            Environment = ["ALLUSERSPROFILE=C:\\ProgramData", "COMPUTERNAME=WS-ALICE", "PATH=C:\\Windows\\system32;C:\\Windows", "STAGE2=http://203.0.113.7/a.ps1", "USERNAME=alice"],
            Dlls = [new("ntdll.dll"), new("kernel32.dll"), new("KernelBase.dll"), new("amsi.dll") { InLoad = false }],
            Injected =
            [
                new(0x0000020000000000, 0x3000, "pe"),
                new(0x0000020000100000, 0x1000, "shellcode"),
            ],
            Threads = [new(6048) { StartModule = "powershell.exe", StartOffset = 0x1000 }, new(6052) { StartAddress = 0x0000020000100000 }],
            Handles = [new("Mutant") { Name = @"\Sessions\1\BaseNamedObjects\Global\m0x41" }, new("Thread") { TargetPid = 6044 }],
            Sids = [UserSid, "S-1-1-0", "S-1-5-32-544", "S-1-5-32-545", "S-1-5-4", "S-1-5-11", "S-1-16-12288"],   // elevated
        };
        return new WindowsScenario
        {
            Name = "attack",
            Processes =
            [
                typical[0], typical[1], typical[2], typical[3], typical[4],
                new(844, 612, "svchost.exe", boot.AddSeconds(11)) { Hollow = HollowKind.Unmapped, CommandLine = @"C:\Windows\system32\svchost.exe -k netsvcs" },
                new(1288, 612, "svchost.exe", boot.AddSeconds(12)) { Hollow = HollowKind.Remapped, HollowedFrom = @"C:\Users\Public\update.exe" },
                word, powershell,
                new(7312, 5120, "rundll32.exe", boot.AddMinutes(44), Unlinked: true) { CommandLine = @"rundll32.exe C:\Users\alice\AppData\Local\Temp\evil.dll,Start" },
            ],
            Drivers =
            [
                new("ntoskrnl.exe") { Path = @"\SystemRoot\system32\ntoskrnl.exe" },
                new("hal.dll") { Path = @"\SystemRoot\system32\hal.dll" },
                new("tcpip.sys") { Path = @"\SystemRoot\System32\drivers\tcpip.sys", Size = 0x2F0000 },
                new("rootkit.sys") { Path = @"\??\C:\Windows\Temp\rootkit.sys", Size = 0x8000, Unlinked = true },
            ],
        };
    }

    /// <summary><paramref name="count"/> more service processes (children of services.exe), for large images.</summary>
    public static IEnumerable<WindowsScenarioProcess> ExtraProcesses(int count)
    {
        var start = new DateTime(2024, 7, 7, 9, 31, 0, DateTimeKind.Utc);
        for (int i = 0; i < count; i++)
        {
            yield return new WindowsScenarioProcess(10000 + 4 * i, 612, "svchost.exe", start.AddSeconds(i))
            {
                CommandLine = $@"C:\Windows\system32\svchost.exe -k svc{i}",
            };
        }
    }

    private int Off(string structName, string field)
        => types.TryGetOffset(structName, field, out int offset) ? offset : throw new InvalidOperationException($"ISF has no {structName}.{field}");

    private bool Has(string structName, string field) => types.TryGetOffset(structName, field, out _);

    private int SizeOf(string name)
        => types.TryGetSize(name, out int size) ? size : throw new InvalidOperationException($"ISF has no {name}");

    /// <summary>Writes a (bit)field of a structure at a virtual address of the address space <paramref name="pml4"/>.</summary>
    public void PutField(ulong pml4, ulong structVa, string structName, string field, ulong value)
    {
        FieldInfo f = types.FindField(structName, field) ?? throw new InvalidOperationException($"ISF has no {structName}.{field}");
        if (!f.IsBitfield)
        {
            int size = f.Type.Resolve().Size;
            Span<byte> bytes = stackalloc byte[size];
            for (int b = 0; b < size; b++)
            {
                bytes[b] = (byte)(b < 8 ? value >> (8 * b) : 0);
            }
            _image.WriteVa(pml4, structVa + (ulong)f.Offset, bytes);
            return;
        }
        for (int b = 0; b < f.BitSize; b++)
        {
            long bit = f.BitOffset + b;
            ulong pa = _image.Translate(pml4, structVa + (ulong)(bit / 8));
            int shift = (int)(bit % 8);
            byte[] image = _image.Bytes;
            image[pa] = (byte)((image[pa] & ~(1 << shift)) | (int)(((value >> b) & 1) << shift));
        }
    }

    /// <summary>Writes a kernel structure field.</summary>
    public void PutKernel(ulong structVa, string structName, string field, ulong value) => PutField(Dtb, structVa, structName, field, value);

    /// <summary>Kernel pool memory: 16-byte aligned, never crossing a 64 KiB chunk (chunks are physically contiguous).</summary>
    public ulong AllocateKernel(int size)
    {
        int rounded = (size + 15) & ~15;
        if (rounded > PoolChunkPages * Page)
        {
            throw new InvalidOperationException($"kernel allocation of {size} bytes is larger than a pool chunk");
        }
        if (_poolNext + (ulong)rounded > _poolEnd)
        {
            ulong pa = _image.AllocContiguous(PoolChunkPages);
            if (_poolVa == 0)
            {
                _poolVa = HeapBase;
            }
            for (int k = 0; k < PoolChunkPages; k++)
            {
                _image.Map4K(Dtb, _poolVa + (ulong)(k * Page), pa + (ulong)(k * Page));
            }
            _poolNext = _poolVa;
            _poolEnd = _poolVa + (ulong)(PoolChunkPages * Page);
            _poolVa = _poolEnd + 0x10000;                 // a gap: virtual neighbours are not chunk neighbours
        }
        ulong va = _poolNext;
        _poolNext += (ulong)rounded;
        return va;
    }

    /// <summary>A pool block: _POOL_HEADER with <paramref name="tag"/>, then <paramref name="bodySize"/> bytes. Returns the address after the header.</summary>
    public ulong AllocatePool(uint tag, int bodySize)
    {
        int header = SizeOf("_POOL_HEADER");
        int total = (header + bodySize + 15) & ~15;
        ulong block = AllocateKernel(total);
        PutKernel(block, "_POOL_HEADER", "BlockSize", (ulong)(total / 16));
        PutKernel(block, "_POOL_HEADER", "PoolType", 2);            // NonPagedPool, stored + 1 (0 is free)
        PutKernel(block, "_POOL_HEADER", "PoolTag", tag);
        return block + (ulong)header;
    }

    /// <summary>A pool tag from its four characters.</summary>
    public static uint Tag(string text) => (uint)(text[0] | text[1] << 8 | text[2] << 16 | text[3] << 24);

    /// <summary>
    /// An object allocation: pool header, optional headers (quota info when <paramref name="quota"/>, then the name info
    /// when <paramref name="name"/> is given), _OBJECT_HEADER and the body. Returns the body address.
    /// </summary>
    public ulong AllocateObject(uint tag, string typeName, int bodySize, bool quota = false, string? name = null)
    {
        int bodyOffset = Off("_OBJECT_HEADER", "Body");
        int quotaSize = quota ? SizeOf("_OBJECT_HEADER_QUOTA_INFO") : 0;
        int nameSize = name is null ? 0 : SizeOf("_OBJECT_HEADER_NAME_INFO");
        int optional = quotaSize + nameSize;
        ulong start = AllocatePool(tag, optional + bodyOffset + bodySize);
        ulong header = start + (ulong)optional;
        byte infoMask = (byte)((name is null ? 0 : 0x02) | (quota ? 0x08 : 0));
        PutKernel(header, "_OBJECT_HEADER", "PointerCount", 1);
        PutKernel(header, "_OBJECT_HEADER", "HandleCount", 1);
        byte index = ObjectTypeIndex(typeName);
        EncodeTypeIndex(typeName, header, ref index);
        PutKernel(header, "_OBJECT_HEADER", "TypeIndex", index);
        PutKernel(header, "_OBJECT_HEADER", "InfoMask", infoMask);
        if (name is not null)
        {
            // _OBJECT_HEADER_NAME_INFO sits just before the _OBJECT_HEADER (after the quota info, which is further out).
            ulong nameInfo = header - (ulong)nameSize;
            PutKernelUnicodeString(nameInfo + (ulong)Off("_OBJECT_HEADER_NAME_INFO", "Name"), name);
        }
        return header + (ulong)bodyOffset;
    }

    /// <summary>
    /// Object type indices as Windows 10 numbers them (before the header cookie is applied); the handles layout
    /// replaces this through <see cref="EncodeTypeIndex"/> when it lays out ObTypeIndexTable.
    /// </summary>
    public static byte ObjectTypeIndex(string typeName) => typeName switch
    {
        "Type" => 2, "Directory" => 3, "SymbolicLink" => 4, "Token" => 5, "Job" => 6, "Process" => 7, "Thread" => 8,
        "Event" => 16, "Mutant" => 17, "Section" => 42, "Key" => 44, "File" => 37, "Driver" => 33, "Device" => 34,
        _ => 0x40,
    };

    /// <summary>Writes a _UNICODE_STRING in kernel memory whose buffer is a fresh kernel allocation.</summary>
    public void PutKernelUnicodeString(ulong at, string text)
    {
        byte[] bytes = PhysicalImage.Utf16z(text);
        ulong buffer = AllocateKernel(bytes.Length);
        _image.WriteVa(Dtb, buffer, bytes);
        PutUnicodeString(Dtb, at, buffer, text);
    }

    /// <summary>Writes the _UNICODE_STRING fields (Length, MaximumLength, Buffer).</summary>
    public void PutUnicodeString(ulong pml4, ulong at, ulong buffer, string text)
    {
        PutField(pml4, at, "_UNICODE_STRING", "Length", (ulong)(text.Length * 2));
        PutField(pml4, at, "_UNICODE_STRING", "MaximumLength", (ulong)(text.Length * 2 + 2));
        PutField(pml4, at, "_UNICODE_STRING", "Buffer", buffer);
    }

    /// <summary>Lays out a list of processes with no extras (the typical scenario's shape).</summary>
    public (byte[] Image, WindowsImageManifest Manifest) Build(IReadOnlyList<WindowsScenarioProcess> processes)
        => Build(new WindowsScenario { Processes = processes });

    /// <summary>Lays out the image.</summary>
    public (byte[] Image, WindowsImageManifest Manifest) Build(WindowsScenario scenario)
    {
        IReadOnlyList<WindowsScenarioProcess> processes = scenario.Processes;
        _image = new PhysicalImage(ImageSize, 0x100000, KernelPhysical);
        _poolNext = _poolEnd = _poolVa = 0;
        _image.Reserve(Dtb, Page);
        _image.Put64(Dtb, 0);
        _image.Put64(Dtb + (ulong)SelfRefIndex * 8, Dtb | PhysicalImage.Present | PhysicalImage.Write | PhysicalImage.Accessed | PhysicalImage.Dirty | PhysicalImage.NoExecute);

        // Kernel image: PE header with the ISF's RSDS record, mapped with 2 MiB pages far enough to cover the data symbols used.
        ulong headRva = types.Symbols.TryGetValue("PsActiveProcessHead", out ulong rva) ? rva : throw new InvalidOperationException("ISF has no PsActiveProcessHead");
        ulong highest = headRva;
        string[] symbols = ["PsLoadedModuleList", "ObTypeIndexTable", "ObHeaderCookie", "NtBuildNumber", "KeNumberProcessors"];
        foreach (string symbol in scenario.Hives is { Count: > 0 } ? [.. symbols, "CmpHiveListHead"] : symbols)
        {
            if (types.Symbols.TryGetValue(symbol, out ulong at))
            {
                highest = Math.Max(highest, at);
            }
        }
        if (scenario.ServiceTable is { } table)
        {
            highest = Math.Max(highest, ServiceTableHighest(table));
        }
        if (scenario.DriverObjects is { Count: > 0 } && types.Symbols.TryGetValue("IopInvalidDeviceRequest", out ulong invalidRequest))
        {
            highest = Math.Max(highest, invalidRequest);
        }
        foreach (ScenarioCallback callback in scenario.Callbacks ?? [])
        {
            highest = Math.Max(highest, types.Symbols[callback.Array] + 64 * 8);
            if (callback.Array == RegistryCallbackList)
            {
                highest = Math.Max(highest, types.Symbols["CmpCallBackCount"] + 8);
            }
        }
        ulong kernelSize = (highest + 0x1000 + TwoMiB - 1) & ~(TwoMiB - 1);
        if (KernelPhysical + kernelSize > (ulong)ImageSize / 2)
        {
            throw new InvalidOperationException($"kernel image of 0x{kernelSize:X} bytes does not fit");
        }
        byte[] pe = new PeImageBuilder
        {
            GuidBytes = PeImageBuilder.GuidToBytes(guid),
            Age = age,
            PdbPath = PdbPath,
            SizeOfImage = (uint)kernelSize,
            ImageBase = KernelBase,
        }.Build();
        _image.Reserve(KernelPhysical, kernelSize);
        pe.CopyTo(_image.Bytes.AsSpan((int)KernelPhysical));
        for (ulong o = 0; o < kernelSize; o += TwoMiB)
        {
            _image.Map2M(Dtb, KernelBase + o, KernelPhysical + o);
        }
        ulong headVa = KernelBase + headRva;
        if (LowStub is ulong stub)
        {
            // Jump (E9 + displacement), then the fixed fields the signature covers; LmTarget: an address in the middle of
            // the kernel image, 16-byte aligned, as the boot processor records its long-mode entry.
            byte[] image = _image.Bytes;
            image[(int)stub] = 0xE9;
            image[(int)stub + 1] = 0x5D;
            image[(int)stub + 2] = 0x06;
            image[(int)stub + 4] = 0x01;
            _image.Put64(stub + 0x70, KernelBase + ((kernelSize / 2 + 0x1230) & ~0xFUL));
            _image.Put64(stub + 0xA0, Dtb);
        }
        LayOutSharedData();

        LayOutObjectTypes();

        // Processes: one object allocation each (pool header 'Proc', quota info, object header, _EPROCESS).
        int size = SizeOf("_EPROCESS");
        int links = Off("_EPROCESS", "ActiveProcessLinks");
        var all = new List<WindowsLaidOutProcess>();
        List<LaidOutService>? laidServices = null;
        foreach (WindowsScenarioProcess p in processes)
        {
            ulong va = AllocateObject(Tag("Proc"), "Process", size, quota: true);
            ulong dtb = p.Pid == 4 ? Dtb : _image.AllocData();
            ulong poolHeader = va - (ulong)(Off("_OBJECT_HEADER", "Body") + SizeOf("_OBJECT_HEADER_QUOTA_INFO") + SizeOf("_POOL_HEADER"));
            all.Add(new WindowsLaidOutProcess(va, p.Pid, p.Ppid, p.ImageFileName.Length > 15 ? p.ImageFileName[..15] : p.ImageFileName, p.CreateTime, dtb)
            {
                Physical = _image.Translate(Dtb, va),
                PoolHeader = _image.Translate(Dtb, poolHeader),
            });
        }
        for (int i = 0; i < all.Count; i++)
        {
            WindowsLaidOutProcess p = all[i];
            PutKernel(p.Address, "_EPROCESS", "UniqueProcessId", (ulong)p.Pid);
            PutKernel(p.Address, "_EPROCESS", "InheritedFromUniqueProcessId", (ulong)p.Ppid);
            byte[] name = new byte[15];
            Encoding.ASCII.GetBytes(p.ImageFileName).CopyTo(name, 0);
            _image.WriteVa(Dtb, p.Address + (ulong)Off("_EPROCESS", "ImageFileName"), name);
            PutKernel(p.Address, "_EPROCESS", "CreateTime", (ulong)p.CreateTime.ToFileTimeUtc());
            PutKernel(p.Address, "_EPROCESS", "Pcb.DirectoryTableBase", p.Dtb);
            // Unlinked entries point at themselves (what RemoveEntryList leaves on a process taken off the list).
            _image.Write64(Dtb, p.Address + (ulong)links, p.Address + (ulong)links);
            _image.Write64(Dtb, p.Address + (ulong)links + 8, p.Address + (ulong)links);
        }
        var laid = all.Where((_, i) => !processes[i].Unlinked).ToList();
        for (int i = 0; i < laid.Count; i++)
        {
            WindowsLaidOutProcess p = laid[i];
            ulong next = i + 1 < laid.Count ? laid[i + 1].Address + (ulong)links : headVa;
            ulong prev = i > 0 ? laid[i - 1].Address + (ulong)links : headVa;
            _image.Write64(Dtb, p.Address + (ulong)links, next);
            _image.Write64(Dtb, p.Address + (ulong)links + 8, prev);
        }
        _image.Write64(Dtb, headVa, laid.Count > 0 ? laid[0].Address + (ulong)links : headVa);
        _image.Write64(Dtb, headVa + 8, laid.Count > 0 ? laid[^1].Address + (ulong)links : headVa);

        // Every process's PML4 shares the kernel half and has its own self-reference, as on Windows.
        foreach (WindowsLaidOutProcess p in all.Where(p => p.Dtb != Dtb))
        {
            _image.Put64(p.Dtb + (ulong)SelfRefIndex * 8, p.Dtb | PhysicalImage.Present | PhysicalImage.Write | PhysicalImage.Accessed | PhysicalImage.Dirty | PhysicalImage.NoExecute);
        }

        for (int i = 0; i < all.Count; i++)
        {
            var process = new ProcessLayout(processes[i], all[i]);
            if (!processes[i].NoUserSpace)
            {
                LayOutUserSpace(process);
            }
            LayOutToken(process);
            LayOutThreads(process);
            LayOutHandles(process, all);
            if (scenario.Services is { Count: > 0 } services && !processes[i].NoUserSpace
                && processes[i].ImageFileName.Equals("services.exe", StringComparison.OrdinalIgnoreCase))
            {
                laidServices = LayOutServices(process, services);
            }
            LayOutVads(process);
        }
        var manifest = new WindowsImageManifest(Dtb, SelfRefIndex, KernelBase, KernelPhysical, headVa, laid)
        {
            Unlinked = [.. all.Where((_, i) => processes[i].Unlinked)],
            PdbGuid = guid,
            PdbAge = age,
            ImageSize = ImageSize,
            Services = laidServices,
            LowStub = LowStub,
        };
        _manifest = manifest;
        LayOutDrivers(scenario.Drivers, manifest);
        if (scenario.Network is not null)
        {
            LayOutNetwork(scenario.Network, manifest);
        }
        if (scenario.Hives is { Count: > 0 } hives)
        {
            manifest.Hives = LayOutHives(hives);
        }
        if (scenario.ServiceTable is { } serviceTable)
        {
            manifest.ServiceTable = LayOutServiceTable(serviceTable, manifest);
        }
        if (scenario.Callbacks is { Count: > 0 } callbacks)
        {
            manifest.Callbacks = LayOutCallbacks(callbacks, manifest);
        }
        if (scenario.CachedFiles is { Count: > 0 } cached)
        {
            manifest.CachedFiles = [.. cached.Select(LayOutCachedFile)];
        }
        if (scenario.MftRecords is { Count: > 0 } mft)
        {
            // Four records per page, in free physical pages (where the MFT's cached pages would be).
            manifest.MftRecords = [];
            for (int i = 0; i < mft.Count; i++)
            {
                ulong page = i % 4 == 0 ? _image.AllocData() : manifest.MftRecords[^1].Physical & ~(ulong)(Page - 1);
                ulong pa = page + (ulong)(i % 4 * MftRecordWriter.RecordSize);
                MftRecordWriter.Write(mft[i]).CopyTo(_image.Bytes.AsSpan(checked((int)pa)));
                manifest.MftRecords.Add(new LaidOutMftRecord(pa, mft[i]));
            }
        }
        if (scenario.DriverObjects is { Count: > 0 } driverObjects)
        {
            manifest.DriverObjects = LayOutDriverObjects(driverObjects, manifest);
        }

        // Kernel half last, so that every kernel mapping made above is shared.
        foreach (WindowsLaidOutProcess p in all.Where(p => p.Dtb != Dtb))
        {
            _image.Bytes.AsSpan((int)Dtb + 256 * 8, 256 * 8).CopyTo(_image.Bytes.AsSpan((int)p.Dtb + 256 * 8));
            _image.Put64(p.Dtb + (ulong)SelfRefIndex * 8, p.Dtb | PhysicalImage.Present | PhysicalImage.Write | PhysicalImage.Accessed | PhysicalImage.Dirty | PhysicalImage.NoExecute);
        }
        return (_image.Bytes, manifest);
    }

    /// <summary>KUSER_SHARED_DATA (version, processor count) and the kernel's NtBuildNumber / KeNumberProcessors variables.</summary>
    private void LayOutSharedData()
    {
        (uint major, uint minor, uint build) = EffectiveVersion;
        ulong shared = _image.AllocData();
        _image.Map4K(Dtb, KUserSharedData, shared, writable: false);
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "NtMajorVersion", major);
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "NtMinorVersion", minor);
        if (Has("_KUSER_SHARED_DATA", "NtBuildNumber"))
        {
            PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "NtBuildNumber", build);
        }
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "NtProductType", 1);          // NtProductWinNt (workstation)
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "ActiveProcessorCount", 2);
        if (types.Symbols.TryGetValue("NtBuildNumber", out ulong buildRva))
        {
            _image.Write32(Dtb, KernelBase + buildRva, build | 0xF0000000);             // free build marker, as Windows stores it
        }
        _image.WriteVa(Dtb, KUserSharedData + (ulong)Off("_KUSER_SHARED_DATA", "NtSystemRoot"), PhysicalImage.Utf16z(@"C:\Windows"));
        ulong now = (ulong)SystemTime.ToFileTimeUtc();
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.LowPart", now & 0xFFFFFFFF);
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.High1Time", now >> 32);
        PutKernel(KUserSharedData, "_KUSER_SHARED_DATA", "SystemTime.High2Time", now >> 32);
        if (types.Symbols.TryGetValue("KdVersionBlock", out ulong kdRva))
        {
            // _DBGKD_GET_VERSION64 as a Windows kernel fills it (0xF: free build; MinorVersion is the build number).
            ulong kd = KernelBase + kdRva;
            PutKernel(kd, "_DBGKD_GET_VERSION64", "MajorVersion", 0xF);
            PutKernel(kd, "_DBGKD_GET_VERSION64", "MinorVersion", build);
            PutKernel(kd, "_DBGKD_GET_VERSION64", "MachineType", 0x8664);
            PutKernel(kd, "_DBGKD_GET_VERSION64", "KernBase", KernelBase);
            if (types.Symbols.TryGetValue("PsLoadedModuleList", out ulong modulesRva))
            {
                PutKernel(kd, "_DBGKD_GET_VERSION64", "PsLoadedModuleList", KernelBase + modulesRva);
            }
        }
        if (types.Symbols.TryGetValue("KeNumberProcessors", out ulong cpusRva))
        {
            _image.Write32(Dtb, KernelBase + cpusRva, 2);
        }
    }

    /// <summary>A process being laid out: its scenario entry and what the manifest records of it.</summary>
    public sealed record ProcessLayout(WindowsScenarioProcess Scenario, WindowsLaidOutProcess LaidOut)
    {
        public ulong Eprocess => LaidOut.Address;
        public ulong Dtb => LaidOut.Dtb;
    }

    /// <summary>Object types (ObTypeIndexTable, the header cookie): laid out by the handles part.</summary>
    partial void LayOutObjectTypes();

    /// <summary>Lets the handles part encode an object header's TypeIndex (Windows 10+: index ^ cookie ^ address byte).</summary>
    partial void EncodeTypeIndex(string typeName, ulong objectHeader, ref byte index);

    /// <summary>The process's primary token and its SIDs.</summary>
    partial void LayOutToken(ProcessLayout process);

    /// <summary>The process's _ETHREADs on ThreadListHead.</summary>
    partial void LayOutThreads(ProcessLayout process);

    /// <summary>The process's handle table and the objects its handles point to.</summary>
    partial void LayOutHandles(ProcessLayout process, IReadOnlyList<WindowsLaidOutProcess> processes);

    /// <summary>The VAD tree describing <see cref="WindowsLaidOutProcess.Regions"/>.</summary>
    partial void LayOutVads(ProcessLayout process);

    /// <summary>Kernel modules on PsLoadedModuleList (and unlinked ones).</summary>
    partial void LayOutDrivers(IReadOnlyList<ScenarioDriver>? drivers, WindowsImageManifest manifest);
}
