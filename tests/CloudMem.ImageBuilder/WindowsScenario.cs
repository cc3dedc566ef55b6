using CloudMem.Engine.Windows;
using System.Text.Json;
using System.Text.Json.Serialization;
using CloudMem.Engine.Windows.Network;
using CloudMem.Engine.Windows.Services;

namespace CloudMem.ImageBuilder;

/// <summary>
/// What a built Windows image should contain: processes (with their DLLs, threads, handles, SIDs, injected regions,
/// hollowing) and kernel drivers. Read from JSON by the command-line entry point; every list may be omitted.
/// </summary>
public sealed record WindowsScenario
{
    /// <summary>Free text naming the scenario.</summary>
    public string? Name { get; init; }

    /// <summary>Processes, in the order they are put on PsActiveProcessHead.</summary>
    public IReadOnlyList<WindowsScenarioProcess> Processes { get; init; } = [];

    /// <summary>Kernel modules on PsLoadedModuleList (null: a default set of drivers).</summary>
    public IReadOnlyList<ScenarioDriver>? Drivers { get; init; }

    /// <summary>tcpip.sys's network objects and tables (null: none laid out, and tcpip.sys keeps a made-up PDB GUID).</summary>
    public ScenarioNetwork? Network { get; init; }

    /// <summary>Registry hives on CmpHiveListHead (null: none, and the image is laid out exactly as before hives existed).</summary>
    public IReadOnlyList<ScenarioHive>? Hives { get; init; }

    /// <summary>The system service table (KiServiceTable) with hooks (null: none laid out, and the image is laid out exactly as before).</summary>
    public ScenarioServiceTable? ServiceTable { get; init; }

    /// <summary>Notification callbacks (null: none laid out, and the image is laid out exactly as before).</summary>
    public IReadOnlyList<ScenarioCallback>? Callbacks { get; init; }

    /// <summary>services.exe's service database (null: none laid out, and the image is laid out exactly as before).</summary>
    public IReadOnlyList<ScenarioService>? Services { get; init; }

    /// <summary>Driver objects with their IRP dispatch tables (null: none laid out, and the image is laid out exactly as before).</summary>
    public IReadOnlyList<ScenarioDriverObject>? DriverObjects { get; init; }

    /// <summary>NTFS FILE records written into free physical pages (null: none, and the image is laid out exactly as before).</summary>
    public IReadOnlyList<ScenarioMftRecord>? MftRecords { get; init; }

    /// <summary>Files cached through a data section (null: none, and the image is laid out exactly as before).</summary>
    public IReadOnlyList<ScenarioCachedFile>? CachedFiles { get; init; }

    /// <summary>JSON options shared by scenario and manifest files (camelCase, enums as strings).</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Reads a scenario file.</summary>
    public static WindowsScenario Load(string path)
    {
        WindowsScenario scenario = JsonSerializer.Deserialize<WindowsScenario>(File.ReadAllText(path), Json)
            ?? throw new InvalidDataException($"{path}: empty scenario");
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        return scenario.Hives is null ? scenario : scenario with
        {
            Hives = [.. scenario.Hives.Select(h => h.File is null ? h : h with { Bytes = File.ReadAllBytes(Path.Combine(directory, h.File)) })],
        };
    }
}

/// <summary>One process of a <see cref="WindowsImageBuilder"/> scenario.</summary>
/// <param name="Unlinked">In memory (with its pool allocation) but not on ActiveProcessLinks, as an exited or hidden process.</param>
public sealed record WindowsScenarioProcess(int Pid, int Ppid, string ImageFileName, DateTime CreateTime, bool Unlinked = false)
{
    /// <summary>Full path of the executable (default C:\Windows\System32\&lt;name&gt;).</summary>
    public string? ImagePath { get; init; }

    /// <summary>Command line in the process parameters (default: the quoted image path).</summary>
    public string? CommandLine { get; init; }

    /// <summary>Environment block as NAME=value strings, in order (default: a small typical set).</summary>
    public IReadOnlyList<string>? Environment { get; init; }

    /// <summary>DLLs loaded after the executable (null: ntdll, kernel32, KernelBase; System has none).</summary>
    public IReadOnlyList<ScenarioDll>? Dlls { get; init; }

    /// <summary>Threads (null: one thread starting at the executable's entry point).</summary>
    public IReadOnlyList<ScenarioThread>? Threads { get; init; }

    /// <summary>Open handles (null: none beyond what the layout needs).</summary>
    public IReadOnlyList<ScenarioHandle>? Handles { get; init; }

    /// <summary>Private memory regions with code written into them (injection).</summary>
    public IReadOnlyList<ScenarioInjection>? Injected { get; init; }

    /// <summary>Process hollowing laid out for this process (null: none).</summary>
    public HollowKind? Hollow { get; init; }

    /// <summary>File the hollowed image section really maps (for <see cref="HollowKind.Remapped"/>).</summary>
    public string? HollowedFrom { get; init; }

    /// <summary>Token user SID first, then group SIDs (null: by process, SYSTEM or a user account).</summary>
    public IReadOnlyList<string>? Sids { get; init; }

    /// <summary>True for processes without a user address space (System, Registry, MemCompression).</summary>
    [JsonIgnore]
    public bool NoUserSpace => Pid == 4 || ImageFileName is "Registry" or "MemCompression";
}

/// <summary>How a process was hollowed.</summary>
public enum HollowKind
{
    /// <summary>The image section at PEB.ImageBaseAddress was unmapped and replaced by private RWX memory holding a PE.</summary>
    Unmapped,

    /// <summary>The image section at PEB.ImageBaseAddress maps a different file than the process claims.</summary>
    Remapped,
}

/// <summary>A DLL in a process: mapped as an image and (unless unlinked) on the PEB loader lists.</summary>
public sealed record ScenarioDll(string Name)
{
    public string? Path { get; init; }
    public ulong? Base { get; init; }
    public uint Size { get; init; } = 0x20000;
    public bool InLoad { get; init; } = true;
    public bool InInit { get; init; } = true;
    public bool InMemory { get; init; } = true;
}

/// <summary>A thread: its start address is a module name plus offset, or an absolute address.</summary>
public sealed record ScenarioThread(int Tid)
{
    public string? StartModule { get; init; }
    public ulong StartOffset { get; init; }
    public ulong? StartAddress { get; init; }
    public DateTime? CreateTime { get; init; }
}

/// <summary>A handle in the process's handle table.</summary>
/// <param name="Type">Object type: File, Process, Thread, Key, Mutant, Event, Section.</param>
public sealed record ScenarioHandle(string Type)
{
    public string? Name { get; init; }
    public int? TargetPid { get; init; }
    public uint GrantedAccess { get; init; } = 0x1F0003;
}

/// <summary>Private memory allocated in the process with content written into it.</summary>
/// <param name="Content">"shellcode", "pe" (an MZ/PE header) or "zero".</param>
public sealed record ScenarioInjection(ulong Address, uint Size, string Content = "shellcode")
{
    public string Protection { get; init; } = "PAGE_EXECUTE_READWRITE";
}

/// <summary>A kernel module on PsLoadedModuleList.</summary>
public sealed record ScenarioDriver(string Name)
{
    public string? Path { get; init; }
    public ulong? Base { get; init; }
    public uint Size { get; init; } = 0x40000;

    /// <summary>In memory with its 'MmLd' pool allocation but not on PsLoadedModuleList.</summary>
    public bool Unlinked { get; init; }
}

/// <summary>
/// KiServiceTable: <see cref="Count"/> entries pointing at the kernel's Nt* functions (ISF symbols in address order),
/// the entries of <see cref="Hooks"/> pointing into a driver instead.
/// </summary>
public sealed record ScenarioServiceTable
{
    /// <summary>Entries (KiServiceLimit).</summary>
    public int Count { get; init; } = 400;

    /// <summary>Hooked entries.</summary>
    public IReadOnlyList<ScenarioSsdtHook> Hooks { get; init; } = [];
}

/// <summary>A service table entry pointing at <see cref="Offset"/> in the driver <see cref="Driver"/> (which must lie within 128 MiB of the table).</summary>
public sealed record ScenarioSsdtHook(int Index, string Driver, uint Offset);

/// <summary>A notification callback in the kernel array <see cref="Array"/> (e.g. PspCreateProcessNotifyRoutine) at <see cref="Offset"/> in <see cref="Driver"/>.</summary>
public sealed record ScenarioCallback(string Array, string Driver, uint Offset);

/// <summary>A registry hive: a real regf file (header + bins) laid out in kernel memory as the configuration manager holds it.</summary>
/// <param name="FileFullPath">_CMHIVE.FileFullPath, e.g. \REGISTRY\MACHINE\SYSTEM (Windows keeps the registry path there).</param>
public sealed record ScenarioHive(string FileFullPath)
{
    /// <summary>_CMHIVE.FileUserName, e.g. \SystemRoot\System32\Config\SYSTEM.</summary>
    public string? FileUserName { get; init; }

    /// <summary>The regf file (relative paths: to the scenario file's directory).</summary>
    public string? File { get; init; }

    /// <summary>The regf bytes (instead of <see cref="File"/>).</summary>
    [JsonIgnore]
    public byte[]? Bytes { get; init; }

    /// <summary>
    /// Volatile symbolic-link keys under the root (name -> target registry path), as Windows creates CurrentControlSet:
    /// laid out in volatile storage (Storage[1]) only, never in the file.
    /// </summary>
    public IReadOnlyDictionary<string, string>? VolatileLinks { get; init; }

    /// <summary>Ordinals (0 = first) of bins whose pages are paged out (software PTEs, frames zeroed).</summary>
    public IReadOnlyList<int>? PagedOutBins { get; init; }
}

/// <summary>A hive laid out: its _CMHIVE, the bins (hive offset, size, virtual address) and which were paged out.</summary>
public sealed record LaidOutHive(ulong Address, string FileFullPath, string? FileUserName, uint StableLength, uint RootCell)
{
    public List<LaidOutBin> Bins { get; init; } = [];

    /// <summary>Bytes of volatile storage (0: none).</summary>
    public uint VolatileLength { get; set; }
}

/// <summary>A bin of a laid-out hive.</summary>
public sealed record LaidOutBin(uint Offset, uint Size, ulong Address, bool PagedOut);

/// <summary>What <see cref="WindowsImageBuilder.Build(WindowsScenario)"/> laid out: the truth plugins are compared with.</summary>
public sealed record WindowsImageManifest(
    ulong Dtb, int SelfRefIndex, ulong KernelBase, ulong KernelPhysical, ulong PsActiveProcessHead,
    IReadOnlyList<WindowsLaidOutProcess> Processes)
{
    /// <summary>Processes laid out (with pool headers) but not on the list.</summary>
    public IReadOnlyList<WindowsLaidOutProcess> Unlinked { get; init; } = [];

    /// <summary>Physical address of the low stub (PROCESSOR_START_BLOCK), null when the image has none.</summary>
    public ulong? LowStub { get; init; }

    /// <summary>Kernel modules laid out (linked and unlinked).</summary>
    public List<LaidOutDriver> Drivers { get; init; } = [];

    /// <summary>Network objects laid out (null when the scenario has no network section).</summary>
    public List<LaidOutEndpoint>? Network { get; set; }

    /// <summary>tcpip.pdb GUID and age written in tcpip.sys's CodeView record, and the layout range used (network scenarios).</summary>
    public string? TcpipGuid { get; set; }
    public uint? TcpipAge { get; set; }
    public string? TcpipLayout { get; set; }

    /// <summary>PDB GUID and age of the kernel image.</summary>
    public string? PdbGuid { get; init; }
    public uint PdbAge { get; init; }

    /// <summary>Size of the raw image in bytes.</summary>
    public long ImageSize { get; init; }

    /// <summary>Registry hives laid out (null when the scenario has none).</summary>
    public List<LaidOutHive>? Hives { get; set; }

    /// <summary>Notification callbacks laid out (null when the scenario has none).</summary>
    public List<LaidOutCallback>? Callbacks { get; set; }

    /// <summary>Service records laid out in services.exe, oldest first (null when the scenario has none).</summary>
    public List<LaidOutService>? Services { get; set; }

    /// <summary>Driver objects laid out (null when the scenario has none).</summary>
    public List<LaidOutDriverObject>? DriverObjects { get; set; }

    /// <summary>MFT records laid out (null when the scenario has none).</summary>
    public List<LaidOutMftRecord>? MftRecords { get; set; }

    /// <summary>Cached files laid out (null when the scenario has none).</summary>
    public List<LaidOutCachedFile>? CachedFiles { get; set; }

    /// <summary>KiServiceTable's entries laid out (null when the scenario has none).</summary>
    public List<LaidOutServiceEntry>? ServiceTable { get; set; }

    /// <summary>All processes, listed first then unlinked.</summary>
    [JsonIgnore]
    public IEnumerable<WindowsLaidOutProcess> AllProcesses => Processes.Concat(Unlinked);
}

/// <summary>One _EPROCESS the builder laid out, with what lives in its address space.</summary>
public sealed record WindowsLaidOutProcess(ulong Address, int Pid, int Ppid, string ImageFileName, DateTime CreateTime, ulong Dtb)
{
    /// <summary>Physical address of the _EPROCESS body.</summary>
    public ulong Physical { get; init; }

    /// <summary>Physical address of its _POOL_HEADER.</summary>
    public ulong PoolHeader { get; init; }

    /// <summary>_PEB address (0 when the process has no user space).</summary>
    public ulong Peb { get; set; }

    /// <summary>PEB.ImageBaseAddress.</summary>
    public ulong ImageBase { get; set; }

    public string? ImagePath { get; set; }
    public string? CommandLine { get; set; }
    public List<string> Environment { get; init; } = [];

    /// <summary>The executable and DLLs mapped as images, in load order (the executable first).</summary>
    public List<LaidOutModule> Modules { get; init; } = [];

    /// <summary>Every user memory region mapped (images, private memory, the PEB, heaps, injected code).</summary>
    public List<LaidOutRegion> Regions { get; init; } = [];

    public List<LaidOutThread> Threads { get; init; } = [];
    public List<LaidOutHandle> Handles { get; init; } = [];
    public List<string> Sids { get; init; } = [];

    /// <summary>Regions malfind must report (private, executable, with a PE header or code).</summary>
    public List<ulong> InjectedRegions { get; init; } = [];

    /// <summary>Hollowing laid out, if any.</summary>
    public HollowKind? Hollow { get; set; }
}

/// <summary>A module mapped in a process (an image VAD), and where it is on the PEB loader lists.</summary>
public sealed record LaidOutModule(string Name, string Path, ulong Base, uint Size, bool InLoad, bool InInit, bool InMemory)
{
    /// <summary>Address of its _LDR_DATA_TABLE_ENTRY (0 when on no list).</summary>
    public ulong LdrEntry { get; init; }

    /// <summary>AddressOfEntryPoint as a virtual address.</summary>
    public ulong EntryPoint { get; init; }
}

/// <summary>Kinds of user memory regions (how their VAD is built).</summary>
public enum RegionKind
{
    /// <summary>An image section (a mapped PE file).</summary>
    Image,

    /// <summary>Private memory (heap, stack, PEB, VirtualAlloc).</summary>
    Private,

    /// <summary>A mapped data file.</summary>
    Mapped,
}

/// <summary>A user region: [Start, End] inclusive, page aligned, its protection name and backing file.</summary>
public sealed record LaidOutRegion(ulong Start, ulong End, RegionKind Kind, string Protection)
{
    public string? FileName { get; init; }

    /// <summary>Address of the _MMVAD node describing it (set when VADs are laid out).</summary>
    public ulong Vad { get; set; }
}

/// <summary>A thread laid out (an _ETHREAD on the process's thread list).</summary>
public sealed record LaidOutThread(ulong Address, int Tid, int Pid, ulong StartAddress, ulong Win32StartAddress, string? StartModule, DateTime CreateTime);

/// <summary>A handle table entry laid out.</summary>
public sealed record LaidOutHandle(ulong HandleValue, string Type, string? Name, ulong Object, uint GrantedAccess);

/// <summary>A kernel module laid out.</summary>
public sealed record LaidOutDriver(string Name, string Path, ulong Base, uint Size, bool OnList, ulong Entry);

/// <summary>The network part of a scenario: tcpip.sys's identity and the endpoints.</summary>
public sealed record ScenarioNetwork
{
    /// <summary>The tcpip.pdb table (GUID-age, as named in shared/symbols/windows/tcpip.pdb) given to tcpip.sys, per kernel
    /// GUID; "*" for any other kernel.</summary>
    public IReadOnlyDictionary<string, string> TcpipPdb { get; init; } = new Dictionary<string, string>();

    /// <summary>Partitions of the TCP partition table (PartitionCount).</summary>
    public int PartitionCount { get; init; } = 2;

    /// <summary>The endpoints, in the order they are allocated.</summary>
    public IReadOnlyList<ScenarioEndpoint> Endpoints { get; init; } = [];
}

/// <summary>One network object. An unbound listener or UDP endpoint has LocalAddr 0.0.0.0 (or ::).</summary>
/// <param name="Unlinked">A TCP connection in its pool allocation but on no partition hash bucket (hidden or closed).</param>
public sealed record ScenarioEndpoint(NetObjectKind Kind, int Pid, string LocalAddr, int LocalPort, DateTime CreateTime)
{
    public string? RemoteAddr { get; init; }
    public int RemotePort { get; init; }
    public TcpState State { get; init; } = TcpState.Established;
    public bool Unlinked { get; init; }
}

/// <summary>A network object laid out: where it is, and the netscan row(s) it must give.</summary>
public sealed record LaidOutEndpoint(
    NetObjectKind Kind, ulong Address, ulong Physical, string Proto, string LocalAddr, int LocalPort, string ForeignAddr, int ForeignPort,
    TcpState? State, int Pid, string Owner, DateTime CreateTime, bool InNetstat);

/// <summary>One KiServiceTable entry: its target and the kernel symbol there (null for a hook) or the driver hooked into.</summary>
public sealed record LaidOutServiceEntry(int Index, ulong Target, string? Symbol, string? Driver);

/// <summary>One notification callback: its array and slot, its _EX_CALLBACK_ROUTINE_BLOCK, the function and its driver.</summary>
public sealed record LaidOutCallback(string Array, int Slot, ulong Block, ulong Function, string Driver);

/// <summary>
/// A service of the service control manager's database: a record in services.exe (with an image record holding
/// <see cref="Binary"/> and <see cref="Pid"/> for a Win32 service that is not stopped; a driver's record points at
/// <see cref="Binary"/> as its driver object name).
/// </summary>
public sealed record ScenarioService(string Name, ServiceTypes Type, ServiceStartType Start, ServiceState State)
{
    /// <summary>Display name (default: the name).</summary>
    public string? DisplayName { get; init; }

    /// <summary>Binary path with arguments (Win32) or driver object name (drivers).</summary>
    public string? Binary { get; init; }

    /// <summary>The service's process (running Win32 services).</summary>
    public int? Pid { get; init; }
}

/// <summary>A service record laid out: what windows.svcscan must give for it.</summary>
public sealed record LaidOutService(ulong Record, uint Order, long? Pid, ServiceStartType Start, ServiceState State, ServiceTypes Type, string Name,
    string DisplayName, string? Binary);

/// <summary>
/// A _DRIVER_OBJECT named <see cref="Name"/> (e.g. \Driver\Tcpip) for the module <see cref="Driver"/>: its dispatch
/// table points into the driver for the majors a driver handles and at the kernel's IopInvalidDeviceRequest for the
/// others, except the <see cref="Hooks"/>.
/// </summary>
public sealed record ScenarioDriverObject(string Name, string Driver)
{
    public IReadOnlyList<ScenarioIrpHook> Hooks { get; init; } = [];
}

/// <summary>IRP major <see cref="Major"/> pointing at <see cref="Offset"/> in <see cref="Driver"/>, or (Driver null) at code in a kernel pool allocation that no module holds.</summary>
public sealed record ScenarioIrpHook(int Major, string? Driver, uint Offset);

/// <summary>A driver object laid out: its address (virtual and physical), name, image range and the 28 dispatch pointers with the module of each (null: none).</summary>
public sealed record LaidOutDriverObject(ulong Address, ulong Physical, string Name, ulong Start, uint Size, IReadOnlyList<ulong> Irps, IReadOnlyList<string?> Modules);

/// <summary>
/// A file whose data section maps <see cref="Content"/> (a whole number of pages): a 'File' object whose
/// SectionObjectPointer's DataSectionObject is a control area with one subsection of prototype PTEs; the pages of
/// <see cref="MissingPages"/> are paged out (pagefile PTEs), those of <see cref="TransitionPages"/> on the standby list
/// (transition PTEs), the others valid.
/// </summary>
public sealed record ScenarioCachedFile(string Name, byte[] Content)
{
    public IReadOnlyList<int> MissingPages { get; init; } = [];
    public IReadOnlyList<int> TransitionPages { get; init; } = [];
}

/// <summary>A cached file laid out: its file object and control area, and the file offsets of the pages not in memory.</summary>
public sealed record LaidOutCachedFile(ulong FileObject, ulong ControlArea, string Name, byte[] Content, IReadOnlyList<long> MissingOffsets);
