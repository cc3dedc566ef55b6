using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// Object types and handles: ObTypeIndexTable (pointers to _OBJECT_TYPE objects, pool tag 'ObjT', each named), the
/// header cookie (ObHeaderCookie, Windows 10+: every _OBJECT_HEADER.TypeIndex is stored as
/// index ^ cookie ^ byte 1 of the header's address), ObpInfoMaskToOffset (the optional-header offsets by InfoMask,
/// computed from the ISF sizes), and per process a level-0 (or level-1) _HANDLE_TABLE with the scenario's handles and the
/// objects they point to: _FILE_OBJECT (with a named _DEVICE_OBJECT), the target _EPROCESS or its first _ETHREAD,
/// _CM_KEY_BODY with a _CM_KEY_CONTROL_BLOCK chain naming the key, and named Mutant/Event/Section objects.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>ObHeaderCookie written on builds whose ISF has the symbol.</summary>
    public byte HeaderCookie { get; init; } = 0x6D;

    /// <summary>Levels of every process's handle table: 0 (one page of entries) or 1 (a page of pointers to entry pages; the handles go into the second entry page).</summary>
    public int HandleTableLevel { get; init; }

    /// <summary>
    /// The object types laid out in ObTypeIndexTable, by index from 2 (0 is null, 1 holds 0xBAD0B0B0 as on Windows). The
    /// indices agree with <see cref="ObjectTypeIndex"/>; the names follow Windows 10's table.
    /// </summary>
    public static readonly IReadOnlyList<string> ObjectTypeNames =
    [
        "Type", "Directory", "SymbolicLink", "Token", "Job", "Process", "Thread", "Partition", "UserApcReserve",
        "IoCompletionReserve", "ActivityReference", "PsSiloContextPaged", "PsSiloContextNonPaged", "DebugObject", "Event",
        "Mutant", "Callback", "Semaphore", "Timer", "IRTimer", "Profile", "KeyedEvent", "WindowStation", "Desktop",
        "Composition", "RawInputManager", "CoreMessaging", "ActivationObject", "TpWorkerFactory", "Adapter", "Controller",
        "Driver", "Device", "IoCompletion", "WaitCompletionPacket", "File", "TmTm", "TmTx", "TmRm", "TmEn", "Section",
        "Session", "Key", "RegistryTransaction", "ALPC Port", "EnergyTracker", "PowerRequest", "WmiGuid", "EtwRegistration",
        "EtwSessionDemuxEntry", "EtwConsumer", "CoverageSampler", "DmaTransaction", "DmaDomain", "FilterConnectionPort",
        "FilterCommunicationPort", "NdisCmState", "PcwObject", "VirtualKey", "VRegConfigurationContext",
        "SchedulerSharedData", "DxgkSharedResource", "DxgkSharedSyncObject",
    ];

    /// <summary>KEY_BODY_TYPE ('ky02'), _CM_KEY_BODY.Type of a key object.</summary>
    public const uint KeyBodyType = 0x6B793032;

    private bool _cookieLaidOut;
    private readonly Dictionary<string, ulong> _devices = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, ulong> _kcbs = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The optional object headers this build has, in InfoMask bit order (bit 0 first), with their sizes.</summary>
    public IReadOnlyList<(string Name, int Size)> OptionalObjectHeaders()
    {
        var headers = new List<(string, int)>();
        foreach (string name in new[] { "CREATOR_INFO", "NAME_INFO", "HANDLE_INFO", "QUOTA_INFO", "PROCESS_INFO", "AUDIT_INFO", "EXTENDED_INFO", "HANDLE_REVOCATION_INFO", "PADDING_INFO" })
        {
            if (types.TryGetSize("_OBJECT_HEADER_" + name, out int size))
            {
                headers.Add((name, size));
            }
        }
        return headers;
    }

    partial void LayOutObjectTypes()
    {
        _cookieLaidOut = false;
        _devices.Clear();
        _kcbs.Clear();
        if (types.Symbols.TryGetValue("ObHeaderCookie", out ulong cookieRva))
        {
            _image.WriteVa(Dtb, KernelBase + cookieRva, [HeaderCookie]);
            _cookieLaidOut = true;
        }
        if (types.Symbols.TryGetValue("ObpInfoMaskToOffset", out ulong maskRva))
        {
            // ObpInfoMaskToOffset[m] = bytes of the optional headers whose bits are set in m (the header of bit b is at
            // the object header minus ObpInfoMaskToOffset[InfoMask & ((b << 1) - 1)]).
            IReadOnlyList<(string Name, int Size)> headers = OptionalObjectHeaders();
            byte[] table = new byte[1 << headers.Count];
            for (int m = 0; m < table.Length; m++)
            {
                table[m] = (byte)headers.Where((_, bit) => (m & (1 << bit)) != 0).Sum(h => h.Size);
            }
            _image.WriteVa(Dtb, KernelBase + maskRva, table);
        }
        if (!types.Symbols.TryGetValue("ObTypeIndexTable", out ulong tableRva))
        {
            return;
        }
        ulong table0 = KernelBase + tableRva;
        _image.Write64(Dtb, table0 + 8, 0xBAD0B0B0);
        int size = SizeOf("_OBJECT_TYPE");
        for (int i = 0; i < ObjectTypeNames.Count; i++)
        {
            string name = ObjectTypeNames[i];
            int index = i + 2;
            ulong type = AllocateObject(Tag("ObjT"), "Type", size, name: name);
            PutKernelUnicodeString(type + (ulong)Off("_OBJECT_TYPE", "Name"), name);
            PutKernel(type, "_OBJECT_TYPE", "Index", (ulong)index);
            ulong typeList = type + (ulong)Off("_OBJECT_TYPE", "TypeList");
            _image.Write64(Dtb, typeList, typeList);
            _image.Write64(Dtb, typeList + 8, typeList);
            _image.Write64(Dtb, table0 + (ulong)index * 8, type);
        }
    }

    partial void EncodeTypeIndex(string typeName, ulong objectHeader, ref byte index)
    {
        int position = ObjectTypeNamesIndex(typeName);
        if (position >= 0)
        {
            index = (byte)(position + 2);
        }
        if (_cookieLaidOut)
        {
            index = (byte)(index ^ HeaderCookie ^ (byte)(objectHeader >> 8));
        }
    }

    private static int ObjectTypeNamesIndex(string typeName)
    {
        for (int i = 0; i < ObjectTypeNames.Count; i++)
        {
            if (ObjectTypeNames[i] == typeName)
            {
                return i;
            }
        }
        return -1;
    }

    partial void LayOutHandles(ProcessLayout process, IReadOnlyList<WindowsLaidOutProcess> processes)
    {
        IReadOnlyList<ScenarioHandle> handles = process.Scenario.Handles ?? [];
        // A process whose threads are not laid out gets empty (self-pointing) thread lists, as a process without threads
        // has on Windows (Volatility's _EPROCESS check wants kernel pointers there).
        foreach (string head in new[] { "ThreadListHead", "Pcb.ThreadListHead" })
        {
            ulong at = process.Eprocess + (ulong)Off("_EPROCESS", head);
            if (_image.Read64(Dtb, at) == 0)
            {
                _image.Write64(Dtb, at, at);
                _image.Write64(Dtb, at + 8, at);
            }
        }
        bool win8 = Has("_HANDLE_TABLE_ENTRY", "ObjectPointerBits");
        int entrySize = SizeOf("_HANDLE_TABLE_ENTRY");
        int perPage = Page / entrySize;
        if (handles.Count >= perPage)
        {
            throw new InvalidOperationException($"process {process.LaidOut.Pid}: more than {perPage - 1} handles");
        }
        ulong handleTable = AllocatePool(Tag("Obtb"), SizeOf("_HANDLE_TABLE"));
        ulong entries = AllocateKernelPage();
        ulong handleBase = 0;
        ulong tableCode = entries;
        if (HandleTableLevel == 1)
        {
            // A page of sub-table pointers: the first entry page stays empty, the handles go into the second.
            ulong top = AllocateKernelPage();
            _image.Write64(Dtb, top, AllocateKernelPage());
            _image.Write64(Dtb, top + 8, entries);
            handleBase = (ulong)perPage;
            tableCode = top | 1;
        }
        PutKernel(handleTable, "_HANDLE_TABLE", "TableCode", tableCode);
        PutKernel(handleTable, "_HANDLE_TABLE", "QuotaProcess", process.Eprocess);
        PutKernel(handleTable, "_HANDLE_TABLE", "UniqueProcessId", (ulong)process.LaidOut.Pid);
        PutKernel(handleTable, "_HANDLE_TABLE", "NextHandleNeedingPool", (ulong)(HandleTableLevel == 1 ? 2 : 1) * (ulong)perPage * 4);
        ulong listEntry = handleTable + (ulong)Off("_HANDLE_TABLE", "HandleTableList");
        _image.Write64(Dtb, listEntry, listEntry);
        _image.Write64(Dtb, listEntry + 8, listEntry);
        PutKernel(process.Eprocess, "_EPROCESS", "ObjectTable", handleTable);

        for (int i = 0; i < handles.Count; i++)
        {
            ScenarioHandle h = handles[i];
            (string type, string? name, ulong body) = LayOutHandleObject(process, h, processes);
            ulong header = body - (ulong)Off("_OBJECT_HEADER", "Body");
            ulong entry = entries + (ulong)((i + 1) * entrySize);
            if (win8)
            {
                PutKernel(entry, "_HANDLE_TABLE_ENTRY", "Unlocked", 1);
                PutKernel(entry, "_HANDLE_TABLE_ENTRY", "ObjectPointerBits", (header >> 4) & ((1UL << 44) - 1));
                PutKernel(entry, "_HANDLE_TABLE_ENTRY", "GrantedAccessBits", h.GrantedAccess & 0x1FFFFFF);
            }
            else
            {
                PutKernel(entry, "_HANDLE_TABLE_ENTRY", "Object", header | 1);    // lock bit set: unlocked
                PutKernel(entry, "_HANDLE_TABLE_ENTRY", "GrantedAccess", h.GrantedAccess);
            }
            uint access = win8 ? h.GrantedAccess & 0x1FFFFFF : h.GrantedAccess;
            process.LaidOut.Handles.Add(new LaidOutHandle((handleBase + (ulong)i + 1) * 4, type, name, body, access));
        }
    }

    /// <summary>A page-aligned page of kernel memory (from the pool chunks), zeroed.</summary>
    private ulong AllocateKernelPage()
    {
        ulong va = AllocateKernel(2 * Page - 16);
        return (va + Page - 1) & ~(ulong)(Page - 1);
    }

    /// <summary>Lays out the object a handle points to; returns its type, its name as the handles plugin shows it, and its body.</summary>
    private (string Type, string? Name, ulong Body) LayOutHandleObject(ProcessLayout process, ScenarioHandle h, IReadOnlyList<WindowsLaidOutProcess> processes)
    {
        switch (h.Type)
        {
            case "Process":
            case "Thread":
            {
                int pid = h.TargetPid ?? process.LaidOut.Pid;
                WindowsLaidOutProcess target = processes.FirstOrDefault(p => p.Pid == pid)
                    ?? throw new InvalidOperationException($"process {process.LaidOut.Pid}: handle to unknown pid {pid}");
                if (h.Type == "Thread" && target.Threads.Count > 0)
                {
                    LaidOutThread thread = target.Threads[0];
                    return ("Thread", $"Tid {thread.Tid} Pid {thread.Pid}", thread.Address);
                }
                // No thread laid out (yet): the handle refers to the process object itself.
                return ("Process", $"{target.ImageFileName} Pid {target.Pid}", target.Address);
            }
            case "File":
            {
                string name = h.Name ?? @"\Device\HarddiskVolume3\Windows\System32\config\SOFTWARE";
                ulong file = AllocateObject(Tag("File"), "File", SizeOf("_FILE_OBJECT"));
                PutKernel(file, "_FILE_OBJECT", "Type", 5);                       // IO_TYPE_FILE
                PutKernel(file, "_FILE_OBJECT", "Size", (ulong)SizeOf("_FILE_OBJECT"));
                string fileName = name;
                if (name.StartsWith(@"\Device\", StringComparison.OrdinalIgnoreCase))
                {
                    int slash = name.IndexOf('\\', 8);
                    string device = slash < 0 ? name[8..] : name[8..slash];
                    fileName = slash < 0 ? "" : name[slash..];
                    PutKernel(file, "_FILE_OBJECT", "DeviceObject", Device(device));
                }
                PutKernelUnicodeString(file + (ulong)Off("_FILE_OBJECT", "FileName"), fileName);
                return ("File", name, file);
            }
            case "Key":
            {
                string name = h.Name ?? @"\REGISTRY\MACHINE\SOFTWARE";
                int size = SizeOf("_CM_KEY_BODY");
                ulong key = AllocateObject(Tag("Key "), "Key", size);
                PutKernel(key, "_CM_KEY_BODY", "Type", KeyBodyType);
                PutKernel(key, "_CM_KEY_BODY", "KeyControlBlock", KeyControlBlock(name));
                PutKernel(key, "_CM_KEY_BODY", "ProcessID", (ulong)process.LaidOut.Pid);
                ulong bodyList = key + (ulong)Off("_CM_KEY_BODY", "KeyBodyList");
                _image.Write64(Dtb, bodyList, bodyList);
                _image.Write64(Dtb, bodyList + 8, bodyList);
                return ("Key", name.TrimEnd('\\'), key);
            }
            default:
            {
                (string tag, string body) = h.Type switch
                {
                    "Mutant" => ("Muta", "_KMUTANT"),
                    "Event" => ("Even", "_KEVENT"),
                    "Section" => ("Sect", "_SECTION"),
                    _ => (h.Type.PadRight(4)[..4], ""),
                };
                int size = body.Length > 0 && types.TryGetSize(body, out int s) ? s : 0x40;
                ulong obj = AllocateObject(Tag(tag), h.Type, size, name: h.Name);
                return (h.Type, h.Name, obj);
            }
        }
    }

    /// <summary>A named _DEVICE_OBJECT (one per name).</summary>
    private ulong Device(string name)
    {
        if (!_devices.TryGetValue(name, out ulong device))
        {
            device = AllocateObject(Tag("Devi"), "Device", SizeOf("_DEVICE_OBJECT"), name: name);
            PutKernel(device, "_DEVICE_OBJECT", "Type", 3);                      // IO_TYPE_DEVICE
            PutKernel(device, "_DEVICE_OBJECT", "Size", (ulong)SizeOf("_DEVICE_OBJECT"));
            _devices[name] = device;
        }
        return device;
    }

    /// <summary>
    /// The _CM_KEY_CONTROL_BLOCK of a key path (\REGISTRY\A\B: one KCB per component, each with ParentKcb and a
    /// compressed (one byte per character) _CM_NAME_CONTROL_BLOCK), shared between keys with a common prefix.
    /// </summary>
    private ulong KeyControlBlock(string path)
    {
        string[] parts = path.Split('\\', StringSplitOptions.RemoveEmptyEntries);
        ulong parent = 0;
        string prefix = "";
        foreach (string part in parts)
        {
            prefix += "\\" + part;
            if (_kcbs.TryGetValue(prefix, out ulong known))
            {
                parent = known;
                continue;
            }
            ulong kcb = AllocateKernel(SizeOf("_CM_KEY_CONTROL_BLOCK"));
            int nameOffset = Off("_CM_NAME_CONTROL_BLOCK", "Name");
            ulong nameBlock = AllocateKernel(Math.Max(SizeOf("_CM_NAME_CONTROL_BLOCK"), nameOffset + part.Length));
            PutKernel(nameBlock, "_CM_NAME_CONTROL_BLOCK", "Compressed", 1);
            PutKernel(nameBlock, "_CM_NAME_CONTROL_BLOCK", "RefCount", 1);
            PutKernel(nameBlock, "_CM_NAME_CONTROL_BLOCK", "NameLength", (ulong)part.Length);
            _image.WriteVa(Dtb, nameBlock + (ulong)nameOffset, Encoding.Latin1.GetBytes(part));
            PutKernel(kcb, "_CM_KEY_CONTROL_BLOCK", "RefCount", 1);
            PutKernel(kcb, "_CM_KEY_CONTROL_BLOCK", "ParentKcb", parent);
            PutKernel(kcb, "_CM_KEY_CONTROL_BLOCK", "NameBlock", nameBlock);
            _kcbs[prefix] = kcb;
            parent = kcb;
        }
        return parent;
    }
}
