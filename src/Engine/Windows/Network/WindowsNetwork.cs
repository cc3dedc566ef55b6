using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows.Network;

/// <summary>
/// Network connections of a Windows capture. windows.netscan scans physical memory for tcpip.sys's pool allocations
/// ('TcpL' listeners, 'TcpE' connections, 'UdpA' UDP endpoints; also 'TTcb' from Server 2022 on) and decodes them with
/// our layout table (<see cref="TcpipLayouts"/>). windows.netstat reaches the same objects the way tcpip.sys does:
/// TCP connections from the partition table (PartitionTable/PartitionCount: per partition an _RTL_DYNAMIC_HASH_TABLE
/// of _LIST_ENTRY buckets), listeners and UDP endpoints from the TCP and UDP port pools (TcpPortPool/UdpPortPool, or
/// through TcpCompartmentSet/UdpCompartmentSet: the pool's port bitmap, then per port its assignment entry pointing at
/// the object's Next field, then the Next chain). The globals' addresses come from tcpip.pdb (<see cref="TcpipModule"/>).
/// netscan marks each object it finds with InNetstat, so a connection unlinked from tcpip's tables stands out.
/// </summary>
public static class WindowsNetwork
{
    /// <summary>Most partitions read (PartitionCount is one byte).</summary>
    public const int MaxPartitions = 256;

    /// <summary>Largest hash table read as a flat bucket array (larger tables use a two-level directory, not read).</summary>
    public const int MaxFlatBuckets = 128;

    /// <summary>Most ports in a port pool bitmap.</summary>
    public const int MaxPorts = 65536;

    /// <summary>Most objects chained on one port.</summary>
    public const int MaxPerPort = 1024;

    private const int BucketSize = 16;
    private const ulong TagMask = ~3UL;

    private static readonly (uint Tag, NetObjectKind Kind)[] s_tags =
    [
        (Tag("TcpL"), NetObjectKind.TcpListener), (Tag("TcpE"), NetObjectKind.TcpEndpoint), (Tag("UdpA"), NetObjectKind.UdpEndpoint),
    ];

    private static readonly (uint, NetObjectKind) s_ttcb = (Tag("TTcb"), NetObjectKind.TcpEndpoint);

    /// <summary>A pool tag from its four characters.</summary>
    private static uint Tag(string text) => (uint)(text[0] | text[1] << 8 | text[2] << 16 | text[3] << 24);

    /// <summary>windows.netscan. <paramref name="tcpip"/> is asked for the netstat walk that sets InNetstat; when it
    /// throws (no tcpip symbols) the rows are still given, InNetstat is null and the reason is a note.</summary>
    /// <param name="kernel">The located kernel.</param>
    /// <param name="tcpip">tcpip.sys and its symbols, for InNetstat.</param>
    /// <param name="ct">Cancellation.</param>
    /// <param name="progress">Receives the pool scan's progress, or null.</param>
    /// <param name="degreeOfParallelism">Pool-scan threads; null for the default (the rows do not depend on it).</param>
    public static RowsReport<WindowsNetScanRow> NetScan(WindowsKernel kernel, Func<TcpipModule> tcpip, CancellationToken ct = default,
        IProgressSink? progress = null, int? degreeOfParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(tcpip);
        TcpipLayout layout = TcpipLayouts.Require(WindowsVersion.Read(kernel));
        var notes = new List<string> { $"tcpip layout: {layout.Name} ({layout.Builds}: {layout.Basis})" };
        HashSet<ulong>? linked = null;
        try
        {
            (List<LinkedObject> objects, List<string> walkNotes) = Walk(kernel, tcpip(), layout, ct);
            notes.AddRange(walkNotes.Select(n => "netstat: " + n));
            linked = [];
            foreach (LinkedObject o in objects)
            {
                if (kernel.Kernel.TryTranslate(o.Address, out Translation t, out _))
                {
                    linked.Add(t.PhysicalAddress);
                }
            }
        }
        catch (KernelNotFoundException e)
        {
            notes.Add($"InNetstat not known: {e.Message}");
        }
        var decoder = new NetworkDecoder(kernel, layout);
        var tags = layout.Major == 10 && layout.FirstBuild >= 20348 ? [.. s_tags, s_ttcb] : s_tags;
        int header = kernel.Types.TryGetSize("_POOL_HEADER", out int h) ? h : throw new KernelNotFoundException($"{kernel.Types.Source} has no _POOL_HEADER");
        int tagOffset = kernel.Types.RequiredOffset("_POOL_HEADER", "PoolTag");
        int extent = new[] { NetObjectKind.TcpListener, NetObjectKind.TcpEndpoint, NetObjectKind.UdpEndpoint }.Max(k => layout.Extent(k));
        int smallest = Math.Min(layout.Listener.Size, Math.Min(layout.Endpoint.Size, layout.Udp.Size));
        byte[] block = new byte[header + extent];
        var rows = new List<WindowsNetScanRow>();
        int invalid = 0;
        IPhysicalMemory physical = kernel.Physical;
        foreach ((ulong pool, ulong blockBytes) in WindowsPoolScanner.ScanPool(physical, kernel.Types, tags.Select(t => t.Tag).ToArray(), smallest, ct, progress, degreeOfParallelism))
        {
            int got = physical.Read(pool, block);
            if (got < header + 8)
            {
                continue;
            }
            uint tag = BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(tagOffset));
            NetObjectKind kind = tags.First(t => t.Tag == tag).Kind;
            int size = kind switch { NetObjectKind.TcpListener => layout.Listener.Size, NetObjectKind.TcpEndpoint => layout.Endpoint.Size, _ => layout.Udp.Size };
            if (blockBytes < (ulong)size || got < header + layout.Extent(kind))
            {
                continue;
            }
            ulong body = pool + (ulong)header;
            IReadOnlyList<NetEndpoint> decoded = decoder.Decode(kind, block.AsSpan(header));
            if (decoded.Count == 0)
            {
                invalid++;
                continue;
            }
            if (rows.Count >= AnalysisLimits.Default.MaxScanResults)
            {
                notes.Add($"more than {AnalysisLimits.Default.MaxScanResults} network objects; scan stopped");
                break;
            }
            bool? inNetstat = linked?.Contains(body);
            rows.AddRange(decoded.Select(e => new WindowsNetScanRow(body, e.Proto, e.LocalAddr, e.LocalPort, e.ForeignAddr, e.ForeignPort,
                e.State, e.Pid, e.Owner, e.Created, inNetstat, e.Kind, e.Doubt)));
        }
        if (invalid > 0)
        {
            notes.Add($"{invalid} network pool allocations did not hold a valid object (freed or reused memory)");
        }
        return new RowsReport<WindowsNetScanRow>("windows.netscan", rows, notes);
    }

    /// <summary>windows.netstat: the objects reached from tcpip.sys's partition table and port pools.</summary>
    public static RowsReport<WindowsNetStatRow> NetStat(WindowsKernel kernel, TcpipModule tcpip, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(tcpip);
        TcpipLayout layout = TcpipLayouts.Require(WindowsVersion.Read(kernel));
        (List<LinkedObject> objects, List<string> notes) = Walk(kernel, tcpip, layout, ct);
        notes.Insert(0, $"tcpip layout: {layout.Name} ({layout.Builds}: {layout.Basis}); symbols {tcpip.SymbolPath}");
        var decoder = new NetworkDecoder(kernel, layout);
        var rows = new List<WindowsNetStatRow>();
        foreach (LinkedObject o in objects)
        {
            byte[] body = new byte[layout.Extent(o.Kind)];
            if (kernel.Kernel.Read(o.Address, body) != body.Length)
            {
                kernel.Kernel.TryTranslate(o.Address, out _, out TranslationFault fault);
                notes.Add($"{o.Source}: {o.Kind} at 0x{o.Address:X} does not read ({fault})");
                continue;
            }
            IReadOnlyList<NetEndpoint> decoded = decoder.Decode(o.Kind, body);
            if (decoded.Count == 0)
            {
                notes.Add($"{o.Source}: 0x{o.Address:X} is not a valid {o.Kind}");
            }
            rows.AddRange(decoded.Select(e => new WindowsNetStatRow(o.Address, e.Proto, e.LocalAddr, e.LocalPort, e.ForeignAddr, e.ForeignPort,
                e.State, e.Pid, e.Owner, e.Created, o.Source, e.Kind, e.Doubt)));
        }
        return new RowsReport<WindowsNetStatRow>("windows.netstat", rows, notes);
    }

    /// <summary>An object reached from tcpip's tables: its virtual address, kind and the table it came from.</summary>
    internal sealed record LinkedObject(ulong Address, NetObjectKind Kind, string Source);

    /// <summary>Every object on the partition table and the two port pools (each once, in that order), with notes
    /// for what could not be read.</summary>
    internal static (List<LinkedObject> Objects, List<string> Notes) Walk(WindowsKernel kernel, TcpipModule tcpip, TcpipLayout layout, CancellationToken ct)
    {
        var objects = new List<LinkedObject>();
        var notes = new List<string>();
        var seen = new HashSet<ulong>();
        void Add(ulong address, NetObjectKind kind, string source)
        {
            if (seen.Add(address))
            {
                objects.Add(new LinkedObject(address, kind, source));
            }
        }
        Partitions(kernel, tcpip, layout, a => Add(a, NetObjectKind.TcpEndpoint, "PartitionTable"), notes, ct);
        var reader = new WindowsMemoryReader(kernel.Kernel);
        if (PortPool(tcpip, reader, "TcpPortPool", "TcpCompartmentSet", notes) is ulong tcpPool)
        {
            Ports(kernel, layout, tcpPool, "TcpPortPool", layout.Listener.Next, a => Add(a, NetObjectKind.TcpListener, "TcpPortPool"), notes, ct);
        }
        if (PortPool(tcpip, reader, "UdpPortPool", "UdpCompartmentSet", notes) is ulong udpPool)
        {
            Ports(kernel, layout, udpPool, "UdpPortPool", layout.Udp.Next, a => Add(a, NetObjectKind.UdpEndpoint, "UdpPortPool"), notes, ct);
        }
        return (objects, notes);
    }

    private static void Partitions(WindowsKernel kernel, TcpipModule tcpip, TcpipLayout layout, Action<ulong> add, List<string> notes, CancellationToken ct)
    {
        if (!tcpip.TryGetSymbol("PartitionTable", out ulong tableSymbol) || !tcpip.TryGetSymbol("PartitionCount", out ulong countSymbol))
        {
            notes.Add($"{tcpip.SymbolPath} has no PartitionTable/PartitionCount symbol: TCP connections not walked");
            return;
        }
        var reader = new WindowsMemoryReader(kernel.Kernel);
        byte[] count = new byte[1];
        if (!reader.TryUInt64(tableSymbol, out ulong table) || !reader.TryRead(countSymbol, count))
        {
            notes.Add(reader.Describe($"PartitionTable at 0x{tableSymbol:X} / PartitionCount at 0x{countSymbol:X}"));
            return;
        }
        int tableSize = kernel.Types.RequiredOffset("_RTL_DYNAMIC_HASH_TABLE", "TableSize");
        int directory = kernel.Types.RequiredOffset("_RTL_DYNAMIC_HASH_TABLE", "Directory");
        int entryOffset = layout.Endpoint.ListEntry;
        for (int i = 0; i < Math.Min((int)count[0], MaxPartitions); i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong partition = table + (ulong)(i * layout.PartitionSize);
            if (!reader.TryUInt64(partition + TcpipLayout.PartitionEndpoints, out ulong hash))
            {
                notes.Add(reader.Describe($"partition {i} at 0x{partition:X}"));
                continue;
            }
            if (hash == 0)
            {
                continue;
            }
            if (!reader.TryUInt32(hash + (ulong)tableSize, out uint buckets) || !reader.TryUInt64(hash + (ulong)directory, out ulong first))
            {
                notes.Add(reader.Describe($"partition {i} hash table at 0x{hash:X}"));
                continue;
            }
            if (buckets > MaxFlatBuckets)
            {
                notes.Add($"partition {i} hash table at 0x{hash:X} has {buckets} buckets (a two-level directory, not read)");
                continue;
            }
            for (uint b = 0; b < buckets; b++)
            {
                ListWalk walk = KernelLists.Circular(kernel.Kernel, first + b * BucketSize, $"partition {i} bucket {b} endpoints",
                    AnalysisLimits.Default.MaxListEntries, WindowsObjectManager.IsKernelPointer, cancellationToken: ct);
                if (walk.Note is not null)
                {
                    notes.Add(walk.Note);
                }
                foreach (ulong link in walk.Entries)
                {
                    add(link - (ulong)entryOffset);
                }
            }
        }
    }

    /// <summary>The port pool: the pointer at <paramref name="poolSymbol"/> (Windows 7/8), else through the compartment set.</summary>
    private static ulong? PortPool(TcpipModule tcpip, WindowsMemoryReader reader, string poolSymbol, string setSymbol, List<string> notes)
    {
        if (tcpip.TryGetSymbol(poolSymbol, out ulong at))
        {
            if (reader.TryUInt64(at, out ulong pool) && pool != 0)
            {
                return pool;
            }
            notes.Add(reader.Describe($"{poolSymbol} at 0x{at:X}"));
            return null;
        }
        if (!tcpip.TryGetSymbol(setSymbol, out at))
        {
            notes.Add($"{tcpip.SymbolPath} has neither {poolSymbol} nor {setSymbol}: not walked");
            return null;
        }
        if (reader.TryUInt64(at, out ulong set) && set != 0
            && reader.TryUInt64(set + TcpipLayout.CompartmentSetInet, out ulong inet) && inet != 0
            && reader.TryUInt64(inet + TcpipLayout.InetCompartmentProtocol, out ulong protocol) && protocol != 0
            && reader.TryUInt64(protocol + TcpipLayout.ProtocolCompartmentPortPool, out ulong portPool) && portPool != 0)
        {
            return portPool;
        }
        notes.Add(reader.Failure is null ? $"{setSymbol} at 0x{at:X}: a null pointer on the way to the port pool" : reader.Describe($"{setSymbol} at 0x{at:X}"));
        return null;
    }

    /// <summary>Every port set in the pool's bitmap, through its assignment entry, then the Next chain.</summary>
    private static void Ports(WindowsKernel kernel, TcpipLayout layout, ulong pool, string name, int nextOffset, Action<ulong> add, List<string> notes, CancellationToken ct)
    {
        var reader = new WindowsMemoryReader(kernel.Kernel);
        PortPoolLayout p = layout.PortPool;
        int bitmap = p.BitMap;
        int sizeField = kernel.Types.RequiredOffset("_RTL_BITMAP", "SizeOfBitMap");
        int bufferField = kernel.Types.RequiredOffset("_RTL_BITMAP", "Buffer");
        if (!reader.TryUInt32(pool + (ulong)(bitmap + sizeField), out uint bits) || !reader.TryUInt64(pool + (ulong)(bitmap + bufferField), out ulong buffer))
        {
            notes.Add(reader.Describe($"{name} at 0x{pool:X}"));
            return;
        }
        if (bits > MaxPorts)
        {
            notes.Add($"{name} at 0x{pool:X}: bitmap of {bits} bits is larger than {MaxPorts}; only the first {MaxPorts} read");
            bits = MaxPorts;
        }
        byte[] map = new byte[bits / 8];
        if (!reader.TryRead(buffer, map))
        {
            notes.Add(reader.Describe($"{name} port bitmap at 0x{buffer:X}"));
            return;
        }
        int missing = 0;
        for (int port = 1; port < map.Length * 8; port++)
        {
            if ((map[port >> 3] & (1 << (port & 7))) == 0)
            {
                continue;
            }
            ct.ThrowIfCancellationRequested();
            if (!reader.TryUInt64(pool + (ulong)(p.Assignments + (port >> 8) * 8), out ulong assignment) || assignment == 0
                || !reader.TryUInt64(assignment + (ulong)p.AssignmentList, out ulong list) || list == 0
                || !reader.TryUInt64(list + (ulong)((port & 0xFF) * p.EntryStride + p.EntryObject), out ulong entry))
            {
                missing++;
                continue;
            }
            var chain = new HashSet<ulong>();
            for (ulong link = entry & TagMask; link != 0; )
            {
                if (!WindowsObjectManager.IsKernelPointer(link) || !chain.Add(link) || chain.Count > MaxPerPort)
                {
                    notes.Add($"{name} port {port}: chain stopped at 0x{link:X} (bad pointer, loop or more than {MaxPerPort} objects)");
                    break;
                }
                add(link - (ulong)nextOffset);
                if (!reader.TryUInt64(link, out ulong next))
                {
                    notes.Add(reader.Describe($"{name} port {port} Next at 0x{link:X}"));
                    break;
                }
                link = next & TagMask;
            }
        }
        if (missing > 0)
        {
            notes.Add($"{name}: {missing} ports marked in use have no readable assignment entry");
        }
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register(new PluginInfo("windows.netscan",
                "Network objects found by scanning for tcpip pool allocations (TCP listeners/connections, UDP; IPv4/IPv6; owner, state, time), with InNetstat",
                TargetOs.Windows, PluginInputs.ProcessFilter),
            (c, a, ct) => a.OnlyPids(NetScan(c.Windows(ct), () => c.Tcpip(ct), ct, c.Progress), r => r.Pid ?? -1));
        PluginRegistry.Register(new PluginInfo("windows.netstat",
                "Network objects reached from tcpip.sys's partition table and port pools (needs tcpip.pdb symbols)",
                TargetOs.Windows, PluginInputs.ProcessFilter),
            (c, a, ct) => a.OnlyPids(NetStat(c.Windows(ct), c.Tcpip(ct), ct), r => r.Pid ?? -1));
    }

    /// <summary>tcpip.sys and its symbols, found once per capture.</summary>
    private static TcpipModule Tcpip(this PluginContext context, CancellationToken ct)
        => context.Get(c => TcpipModule.Open(c.Windows(ct), c.Symbols.WindowsStore(), ct));
}
