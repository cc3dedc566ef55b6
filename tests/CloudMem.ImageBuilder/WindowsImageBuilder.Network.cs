using System.Buffers.Binary;
using System.Net;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows.Network;

namespace CloudMem.ImageBuilder;

/// <summary>
/// Network objects, laid out as tcpip.sys keeps them: tcpip.sys's CodeView record names a real tcpip.pdb (GUID/age of a
/// table in shared/symbols/windows/tcpip.pdb, whose symbol RVAs place the globals), each listener/connection/UDP
/// endpoint in its own pool allocation ('TcpL', 'TcpE', 'UdpA') on the layout of CloudMem's table for the image's
/// build, the TCP partition table (PartitionTable/PartitionCount; per partition a hash table of 128 LIST_ENTRY
/// buckets, each linked connection alone in its bucket) and the TCP/UDP port pools reached through the compartment
/// sets (or TcpPortPool/UdpPortPool when the table has them): bitmap, assignment lists, entries pointing at each
/// object's Next field with a low tag bit set. An unlinked connection keeps its allocation but is in no bucket.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    private const int Buckets = 128;

    /// <summary>tcpip.pdb's symbols (its RVAs); required when the scenario has a network section.</summary>
    public TypeModel? TcpipSymbols { get; set; }

    /// <summary>
    /// The tcpip.pdb tables the network scenario gives tcpip.sys, per kernel. shared/symbols/windows/tcpip.pdb holds 85
    /// Windows 10/11-era tables (all with TcpCompartmentSet, none with Windows 7's TcpPortPool) and no version of the
    /// tcpip.sys each belongs to, so the pairing is nominal: the earliest-looking table (smallest image) for 10 19041,
    /// the latest-looking one for 11 22000, and for Windows 7 another Windows 10-era table.
    /// </summary>
    public static IReadOnlyDictionary<string, string> NetworkTcpipTables { get; } = new Dictionary<string, string>
    {
        ["606FF669409B00F7FC8C61A9C1670129"] = "3D457883A4764628A66DCAB9D2CEF05C-1",
        ["0CE4A95C0CD782A7596B034D8648E585"] = "1B3068ABCC6786CA3B447B9F3B7E3C04-1",
        ["339E74133576439CBCDF7E0229DA3773"] = "0AE5CAF3B711E7B103D45D561722A335-1",
        ["*"] = "3D457883A4764628A66DCAB9D2CEF05C-1",
    };

    /// <summary>
    /// The network scenario: the attack scenario's processes and drivers, plus an attacker's traces in tcpip.sys: a
    /// reverse shell (powershell.exe to 203.0.113.7:4444), a listener on a high port owned by the unlinked rundll32.exe,
    /// a UDP endpoint, an IPv6 connection, a listener bound to one address, and a second powershell connection
    /// unlinked from the partition table (in memory, hidden from netstat).
    /// </summary>
    public static WindowsScenario NetworkScenario()
    {
        WindowsScenario attack = AttackScenario();
        var t = new DateTime(2024, 7, 7, 10, 13, 0, DateTimeKind.Utc);
        return attack with
        {
            Name = "network",
            Network = new ScenarioNetwork
            {
                TcpipPdb = NetworkTcpipTables,
                PartitionCount = 2,
                Endpoints =
                [
                    new(NetObjectKind.TcpListener, 4, "10.0.2.15", 445, t.AddMinutes(-40)),
                    new(NetObjectKind.TcpListener, 7312, "0.0.0.0", 51337, t.AddMinutes(1)),
                    new(NetObjectKind.UdpEndpoint, 780, "0.0.0.0", 5355, t.AddMinutes(-39)),
                    new(NetObjectKind.TcpEndpoint, 6044, "10.0.2.15", 49733, t.AddSeconds(5)) { RemoteAddr = "203.0.113.7", RemotePort = 4444 },
                    new(NetObjectKind.TcpEndpoint, 780, "2001:db8::15", 49802, t.AddMinutes(-3)) { RemoteAddr = "2001:db8:0:1::7", RemotePort = 443 },
                    new(NetObjectKind.TcpEndpoint, 5120, "10.0.2.15", 49701, t.AddMinutes(-2)) { RemoteAddr = "198.51.100.20", RemotePort = 443, State = TcpState.CloseWait },
                    new(NetObjectKind.TcpEndpoint, 6044, "10.0.2.15", 49740, t.AddSeconds(30)) { RemoteAddr = "198.51.100.23", RemotePort = 8080, Unlinked = true },
                ],
            },
        };
    }

    /// <summary>The tcpip.pdb table a network scenario names for this kernel ("GUID-age").</summary>
    public static string TcpipTable(ScenarioNetwork network, string kernelGuid)
    {
        ArgumentNullException.ThrowIfNull(network);
        return network.TcpipPdb.TryGetValue(kernelGuid.ToUpperInvariant(), out string? table) || network.TcpipPdb.TryGetValue("*", out table)
            ? table
            : throw new InvalidOperationException($"the network scenario names no tcpip.pdb table for kernel {kernelGuid}");
    }

    private void LayOutNetwork(ScenarioNetwork network, WindowsImageManifest manifest)
    {
        TypeModel tcpip = TcpipSymbols ?? throw new InvalidOperationException("a network scenario needs tcpip.pdb symbols (TcpipSymbols / --tcpip-isf)");
        (uint major, uint minor, uint build) = EffectiveVersion;
        TcpipLayout layout = TcpipLayouts.Find(major, minor, build)
            ?? throw new InvalidOperationException($"no tcpip layout for {major}.{minor}.{build}");
        LaidOutDriver driver = manifest.Drivers.FirstOrDefault(d => d.Name.Equals("tcpip.sys", StringComparison.OrdinalIgnoreCase))
            ?? throw new InvalidOperationException("a network scenario needs a tcpip.sys driver");
        string[] table = TcpipTable(network, guid).Split('-');
        uint tcpipAge = uint.Parse(table[1], System.Globalization.CultureInfo.InvariantCulture);
        _image.WriteVa(Dtb, driver.Base + PeImageBuilder.RsdsRva + 4, PeImageBuilder.GuidToBytes(table[0]));
        _image.Write32(Dtb, driver.Base + PeImageBuilder.RsdsRva + 20, tcpipAge);
        manifest.TcpipGuid = table[0].ToUpperInvariant();
        manifest.TcpipAge = tcpipAge;
        manifest.TcpipLayout = layout.Name;

        ulong Global(string name)
        {
            ulong va = driver.Base + (tcpip.Symbols.TryGetValue(name, out ulong rva) ? rva : throw new InvalidOperationException($"tcpip table has no {name}"));
            _image.MapFresh(Dtb, va & ~(ulong)(Page - 1), Page, user: false);
            return va;
        }

        var owners = manifest.AllProcesses.ToDictionary(p => p.Pid);
        var families = new Dictionary<ushort, ulong>();
        ulong Family(ushort af)
        {
            if (!families.TryGetValue(af, out ulong record))
            {
                record = AllocateKernel(0x40);
                _image.Write16(Dtb, record + (ulong)layout.InetAfFamily, af);
                families[af] = record;
            }
            return record;
        }
        ulong Address(IPAddress ip)
        {
            ulong at = AllocateKernel(16);
            _image.WriteVa(Dtb, at, ip.GetAddressBytes());
            return at;
        }
        ulong LocalRecord(IPAddress ip, bool direct)
        {
            ulong record = AllocateKernel(0x20);
            if (direct)
            {
                _image.Write64(Dtb, record, Address(ip));
                return record;
            }
            ulong pointer = AllocateKernel(8);
            _image.Write64(Dtb, pointer, Address(ip));
            _image.Write64(Dtb, record + (ulong)layout.LocalAddressData, pointer);
            return record;
        }

        var laid = new List<LaidOutEndpoint>();
        var connections = new List<ulong>();
        var tcpPorts = new List<(int Port, ulong Next)>();
        var udpPorts = new List<(int Port, ulong Next)>();
        foreach (ScenarioEndpoint e in network.Endpoints)
        {
            IPAddress local = IPAddress.Parse(e.LocalAddr);
            bool v6 = local.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
            bool bound = !local.Equals(IPAddress.Any) && !local.Equals(IPAddress.IPv6Any);
            ushort af = v6 ? (ushort)0x17 : (ushort)2;
            WindowsLaidOutProcess owner = owners[e.Pid];
            ulong created = (ulong)e.CreateTime.ToFileTimeUtc();
            ulong body;
            string proto = (e.Kind == NetObjectKind.UdpEndpoint ? "UDP" : "TCP") + (v6 ? "v6" : "v4");
            string any = v6 ? "::" : "0.0.0.0";
            switch (e.Kind)
            {
                case NetObjectKind.TcpListener:
                {
                    TcpListenerLayout l = layout.Listener;
                    body = AllocatePool(Tag("TcpL"), layout.Extent(e.Kind));
                    PutObject(body, l.InetAf, Family(af), l.Owner, owner.Address, l.CreateTime, created, l.Port, e.LocalPort);
                    _image.Write64(Dtb, body + (ulong)l.LocalAddr, bound ? LocalRecord(local, direct: false) : 0);
                    tcpPorts.Add((e.LocalPort, body + (ulong)l.Next));
                    laid.Add(new LaidOutEndpoint(e.Kind, body, _image.Translate(Dtb, body), proto, local.ToString(), e.LocalPort, any, 0,
                        TcpState.Listening, e.Pid, owner.ImageFileName, e.CreateTime, true));
                    break;
                }
                case NetObjectKind.UdpEndpoint:
                {
                    UdpEndpointLayout l = layout.Udp;
                    body = AllocatePool(Tag("UdpA"), layout.Extent(e.Kind));
                    PutObject(body, l.InetAf, Family(af), l.Owner, owner.Address, l.CreateTime, created, l.Port, e.LocalPort);
                    _image.Write64(Dtb, body + (ulong)l.LocalAddr, bound ? LocalRecord(local, l.LocalAddrDirect) : 0);
                    udpPorts.Add((e.LocalPort, body + (ulong)l.Next));
                    laid.Add(new LaidOutEndpoint(e.Kind, body, _image.Translate(Dtb, body), proto, local.ToString(), e.LocalPort, "*", 0,
                        null, e.Pid, owner.ImageFileName, e.CreateTime, true));
                    break;
                }
                default:
                {
                    TcpEndpointLayout l = layout.Endpoint;
                    body = AllocatePool(Tag("TcpE"), layout.Extent(e.Kind));
                    PutObject(body, l.InetAf, Family(af), l.Owner, owner.Address, l.CreateTime, created, l.LocalPort, e.LocalPort);
                    IPAddress remote = IPAddress.Parse(e.RemoteAddr ?? throw new InvalidOperationException("a TCP connection needs RemoteAddr"));
                    ulong info = AllocateKernel(0x20);
                    _image.Write64(Dtb, info + TcpipLayout.AddrInfoLocal, LocalRecord(local, direct: false));
                    _image.Write64(Dtb, info + TcpipLayout.AddrInfoRemote, Address(remote));
                    _image.Write64(Dtb, body + (ulong)l.AddrInfo, info);
                    _image.Write32(Dtb, body + (ulong)l.State, (uint)e.State);
                    _image.Write16(Dtb, body + (ulong)l.RemotePort, BinaryPrimitives.ReverseEndianness((ushort)e.RemotePort));
                    ulong link = body + (ulong)l.ListEntry;
                    _image.Write64(Dtb, link, link);
                    _image.Write64(Dtb, link + 8, link);
                    if (!e.Unlinked)
                    {
                        connections.Add(link);
                    }
                    laid.Add(new LaidOutEndpoint(e.Kind, body, _image.Translate(Dtb, body), proto, local.ToString(), e.LocalPort, remote.ToString(),
                        e.RemotePort, e.State, e.Pid, owner.ImageFileName, e.CreateTime, !e.Unlinked));
                    break;
                }
            }
        }
        manifest.Network = laid;
        LayOutPartitions(layout, network.PartitionCount, connections, Global("PartitionTable"), Global("PartitionCount"));
        LayOutPortPool(layout, tcpip, "TcpPortPool", "TcpCompartmentSet", tcpPorts, Global);
        LayOutPortPool(layout, tcpip, "UdpPortPool", "UdpCompartmentSet", udpPorts, Global);
    }

    /// <summary>The fields every network object has: address family record, owner, create time and local port (big-endian).</summary>
    private void PutObject(ulong body, int inetAf, ulong family, int owner, ulong eprocess, int created, ulong fileTime, int port, int value)
    {
        _image.Write64(Dtb, body + (ulong)inetAf, family);
        _image.Write64(Dtb, body + (ulong)owner, eprocess);
        _image.Write64(Dtb, body + (ulong)created, fileTime);
        _image.Write16(Dtb, body + (ulong)port, BinaryPrimitives.ReverseEndianness((ushort)value));
    }

    /// <summary>The partition table: <paramref name="count"/> partitions, connection i in partition i % count, bucket 7i+3.</summary>
    private void LayOutPartitions(TcpipLayout layout, int count, List<ulong> connections, ulong tableSymbol, ulong countSymbol)
    {
        ulong table = AllocateKernel(count * layout.PartitionSize);
        _image.Write64(Dtb, tableSymbol, table);
        _image.Write32(Dtb, countSymbol, (uint)count);
        for (int p = 0; p < count; p++)
        {
            ulong hash = AllocateKernel(SizeOf("_RTL_DYNAMIC_HASH_TABLE"));
            ulong directory = AllocateKernel(Buckets * 16);
            for (int b = 0; b < Buckets; b++)
            {
                ulong bucket = directory + (ulong)(b * 16);
                _image.Write64(Dtb, bucket, bucket);
                _image.Write64(Dtb, bucket + 8, bucket);
            }
            List<ulong> mine = connections.Where((_, i) => i % count == p).ToList();
            for (int i = 0; i < mine.Count; i++)
            {
                ulong bucket = directory + (ulong)((7 * (i * count + p) + 3) % Buckets * 16);
                _image.Write64(Dtb, bucket, mine[i]);
                _image.Write64(Dtb, bucket + 8, mine[i]);
                _image.Write64(Dtb, mine[i], bucket);
                _image.Write64(Dtb, mine[i] + 8, bucket);
            }
            PutKernel(hash, "_RTL_DYNAMIC_HASH_TABLE", "TableSize", Buckets);
            PutKernel(hash, "_RTL_DYNAMIC_HASH_TABLE", "NumEntries", (ulong)mine.Count);
            PutKernel(hash, "_RTL_DYNAMIC_HASH_TABLE", "Directory", directory);
            _image.Write64(Dtb, table + (ulong)(p * layout.PartitionSize) + TcpipLayout.PartitionEndpoints, hash);
        }
    }

    /// <summary>A port pool (bitmap of 65536 ports, 256 assignment pointers, lists of 256 entries) and the pointer to it.</summary>
    private void LayOutPortPool(TcpipLayout layout, TypeModel tcpip, string poolSymbol, string setSymbol, List<(int Port, ulong Next)> ports, Func<string, ulong> global)
    {
        PortPoolLayout p = layout.PortPool;
        ulong pool = AllocateKernel(p.Assignments + 256 * 8);
        ulong bitmap = AllocateKernel(65536 / 8);
        PutKernel(pool + (ulong)p.BitMap, "_RTL_BITMAP", "SizeOfBitMap", 65536);
        PutKernel(pool + (ulong)p.BitMap, "_RTL_BITMAP", "Buffer", bitmap);
        var lists = new Dictionary<int, ulong>();
        foreach ((int port, ulong next) in ports)
        {
            ulong bits = bitmap + (ulong)(port >> 3);
            byte[] one = new byte[1];
            _image.ReadVa(Dtb, bits, one);
            one[0] |= (byte)(1 << (port & 7));
            _image.WriteVa(Dtb, bits, one);
            if (!lists.TryGetValue(port >> 8, out ulong list))
            {
                ulong assignment = AllocateKernel(0x40);
                list = AllocateKernel(256 * p.EntryStride);
                _image.Write64(Dtb, assignment + (ulong)p.AssignmentList, list);
                _image.Write64(Dtb, pool + (ulong)(p.Assignments + (port >> 8) * 8), assignment);
                lists[port >> 8] = list;
            }
            _image.Write64(Dtb, list + (ulong)((port & 0xFF) * p.EntryStride + p.EntryObject), next | 1);   // low bits are flags
        }
        if (tcpip.Symbols.ContainsKey(poolSymbol))
        {
            _image.Write64(Dtb, global(poolSymbol), pool);
            return;
        }
        ulong set = AllocateKernel(0x180), inet = AllocateKernel(0x30), protocol = AllocateKernel(0x10);
        _image.Write64(Dtb, global(setSymbol), set);
        _image.Write64(Dtb, set + TcpipLayout.CompartmentSetInet, inet);
        _image.Write64(Dtb, inet + TcpipLayout.InetCompartmentProtocol, protocol);
        _image.Write64(Dtb, protocol + TcpipLayout.ProtocolCompartmentPortPool, pool);
    }
}
