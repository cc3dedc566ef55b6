using CloudMem.Engine.Core;

namespace CloudMem.Engine.Windows.Network;

/// <summary>Offsets inside a TCP listener (pool tag 'TcpL').</summary>
/// <param name="Size">Smallest body a 'TcpL' allocation must hold.</param>
/// <param name="Next">Pointer to the next listener on the same port (the port pool chains them through it).</param>
/// <param name="Port">Offset of the local port (network byte order).</param>
/// <param name="InetAf">Offset of the pointer to the address-family record.</param>
/// <param name="Owner">Offset of the pointer to the owning _EPROCESS.</param>
/// <param name="CreateTime">Offset of the creation time (FILETIME).</param>
/// <param name="LocalAddr">Offset of the pointer to the local-address record.</param>
public sealed record TcpListenerLayout(int Size, int InetAf, int Owner, int CreateTime, int LocalAddr, int Port, int Next);

/// <summary>Offsets inside a TCP endpoint (pool tag 'TcpE').</summary>
/// <param name="ListEntry">The _LIST_ENTRY linking the endpoint into its partition's hash bucket.</param>
/// <param name="LocalPort">Offset of the local port (network byte order).</param>
/// <param name="RemotePort">Offset of the remote port (network byte order).</param>
/// <param name="Owner">Offset of the pointer to the owning _EPROCESS.</param>
/// <param name="CreateTime">Offset of the creation time (FILETIME).</param>
/// <param name="Size">Smallest body a 'TcpE' allocation must hold.</param>
/// <param name="InetAf">Offset of the pointer to the address-family record.</param>
/// <param name="AddrInfo">Offset of the pointer to the address-info record (local and remote addresses).</param>
/// <param name="State">Offset of the TCP state.</param>
public sealed record TcpEndpointLayout(int Size, int InetAf, int AddrInfo, int ListEntry, int State, int LocalPort, int RemotePort, int Owner, int CreateTime);

/// <summary>Offsets inside a UDP endpoint (pool tag 'UdpA').</summary>
/// <param name="LocalAddrDirect">True when LocalAddr points at a record whose first field points at the address
/// (Windows 10+); false when it is a local-address record like the TCP listener's.</param>
/// <param name="Port">Offset of the local port (network byte order).</param>
/// <param name="Next">Pointer to the next endpoint on the same port (the port pool chains them through it).</param>
/// <param name="Size">Smallest body a 'UdpA' allocation must hold.</param>
/// <param name="InetAf">Offset of the pointer to the address-family record.</param>
/// <param name="Owner">Offset of the pointer to the owning _EPROCESS.</param>
/// <param name="CreateTime">Offset of the creation time (FILETIME).</param>
/// <param name="LocalAddr">Offset of the pointer to the local address (see LocalAddrDirect).</param>
public sealed record UdpEndpointLayout(int Size, int InetAf, int Owner, int CreateTime, int LocalAddr, int Port, int Next, bool LocalAddrDirect);

/// <summary>Offsets of the port pool (TcpPortPool / UdpPortPool, or through the compartment sets).</summary>
/// <param name="BitMap">The pool's _RTL_BITMAP of ports in use.</param>
/// <param name="Assignments">Array of 256 pointers to port assignments (one per high byte of the port).</param>
/// <param name="AssignmentList">Offset in a port assignment of the pointer to its list of 256 entries.</param>
/// <param name="EntryStride">Size of one entry of that list.</param>
/// <param name="EntryObject">Offset in an entry of the pointer to the owner's Next field (low 2 bits are flags).</param>
public sealed record PortPoolLayout(int BitMap, int Assignments, int AssignmentList, int EntryStride, int EntryObject);

/// <summary>
/// The tcpip.sys structure layouts of one range of Windows builds. Microsoft's public tcpip.pdb has symbols but no
/// types for these structures, so they are kept here, per build range.
/// </summary>
/// <param name="Name">Short name of the range.</param>
/// <param name="Major">NtMajorVersion.</param>
/// <param name="Minor">NtMinorVersion.</param>
/// <param name="FirstBuild">First kernel build number covered.</param>
/// <param name="LastBuild">Last kernel build number covered.</param>
/// <param name="Basis">Where the offsets come from and what is not verified.</param>
/// <param name="InetAfFamily">Offset of AddressFamily in the address-family record an endpoint points to.</param>
/// <param name="LocalAddressData">Offset in a local-address record of the pointer to the pointer to the address.</param>
/// <param name="PartitionSize">Size of one entry of the partition table.</param>
/// <param name="Listener">Layout of a TCP listener.</param>
/// <param name="Endpoint">Layout of a TCP endpoint.</param>
/// <param name="Udp">Layout of a UDP endpoint.</param>
/// <param name="PortPool">Layout of the port pools.</param>
public sealed record TcpipLayout(
    string Name, uint Major, uint Minor, uint FirstBuild, uint LastBuild, string Basis,
    TcpListenerLayout Listener, TcpEndpointLayout Endpoint, UdpEndpointLayout Udp, PortPoolLayout PortPool,
    int InetAfFamily, int LocalAddressData, int PartitionSize)
{
    /// <summary>Offset in an address-info record (TCP endpoint) of the local-address record pointer.</summary>
    public const int AddrInfoLocal = 0;

    /// <summary>Offset in an address-info record of the pointer to the remote address.</summary>
    public const int AddrInfoRemote = 0x10;

    /// <summary>Offset in a partition of the pointer to its endpoint hash table (_RTL_DYNAMIC_HASH_TABLE).</summary>
    public const int PartitionEndpoints = 8;

    /// <summary>Offsets from a compartment set (TcpCompartmentSet / UdpCompartmentSet) to its port pool: the set's
    /// InetCompartment pointer, the compartment's ProtocolCompartment pointer, whose first field is the PortPool pointer.</summary>
    public const int CompartmentSetInet = 0x148, InetCompartmentProtocol = 0x20, ProtocolCompartmentPortPool = 0;

    /// <summary>Bytes of an object of <paramref name="kind"/> read before decoding it: its size, and through its last field.</summary>
    public int Extent(NetObjectKind kind) => kind switch
    {
        NetObjectKind.TcpListener => new[] { Listener.Size, Listener.InetAf, Listener.Owner, Listener.CreateTime, Listener.LocalAddr, Listener.Next }.Max() + 8,
        NetObjectKind.TcpEndpoint => new[] { Endpoint.Size, Endpoint.InetAf, Endpoint.AddrInfo, Endpoint.ListEntry + 8, Endpoint.Owner, Endpoint.CreateTime }.Max() + 8,
        _ => new[] { Udp.Size, Udp.InetAf, Udp.Owner, Udp.CreateTime, Udp.LocalAddr, Udp.Next }.Max() + 8,
    };

    /// <summary>The builds covered, as text ("10.0.19041-19045").</summary>
    public string Builds => FirstBuild == LastBuild ? $"{Major}.{Minor}.{FirstBuild}" : $"{Major}.{Minor}.{FirstBuild}-{LastBuild}";
}

/// <summary>
/// Our table of tcpip.sys layouts (x64 only), chosen by the kernel's version (NtMajorVersion/NtMinorVersion from
/// KUSER_SHARED_DATA, the build from NtBuildNumber). The offsets are facts learned from public references: Volatility
/// 3's per-build netscan tables (volatility3/framework/symbols/windows/netscan) and the structures they describe.
/// Covered: Windows 7 / Server 2008 R2 (7600-7601), 8 (9200), 8.1 (9600), 10 1703 to 22H2 (15063-19045), Server 2022
/// (20348), Windows 11 21H2 (22000). Not covered: Vista, Windows 10 1507-1607 (10240-14393: the known table lacks the
/// port-pool and list fields), 8.1 with tcpip 6.3.9600.19935+ (other endpoint offsets under the same kernel build),
/// Windows 11 22H2+ (22621+), x86 and ARM64.
/// </summary>
public static class TcpipLayouts
{
    private static readonly PortPoolLayout s_pool7 = new(BitMap: 0x90, Assignments: 0xA0, AssignmentList: 0x20, EntryStride: 16, EntryObject: 8);
    private static readonly PortPoolLayout s_pool8 = new(0xA0, 0xB0, 0x20, 16, 8);
    private static readonly PortPoolLayout s_pool81 = new(0xA0, 0xB0, 0x20, 24, 8);
    private static readonly PortPoolLayout s_pool1703 = new(0xD8, 0xE8, 0x18, 24, 8);
    private static readonly PortPoolLayout s_pool1903 = new(0xD0, 0xE0, 0x18, 24, 8);
    private static readonly PortPoolLayout s_pool2004 = new(0xD0, 0xE0, 0x18, 32, 0x10);
    private static readonly TcpListenerLayout s_listener8 = new(Size: 0x6C, InetAf: 0x60, Owner: 0x28, CreateTime: 0x40, LocalAddr: 0x58, Port: 0x6A, Next: 0x70);
    private static readonly TcpListenerLayout s_listener10 = new(0x74, 0x28, 0x30, 0x40, 0x60, 0x72, 0x78);
    private static readonly UdpEndpointLayout s_udp10 = new(0x84, InetAf: 0x20, Owner: 0x28, CreateTime: 0x58, LocalAddr: 0x80, Port: 0x78, Next: 0x70, LocalAddrDirect: true);

    /// <summary>Every range, oldest first.</summary>
    public static IReadOnlyList<TcpipLayout> All { get; } =
    [
        new("win7", 6, 1, 7600, 7601, "Windows 7 SP1 / Server 2008 R2 x64",
            new TcpListenerLayout(Size: 0x6C, InetAf: 0x60, Owner: 0x28, CreateTime: 0x20, LocalAddr: 0x58, Port: 0x6A, Next: 0x70),
            new TcpEndpointLayout(Size: 0x240, InetAf: 0x18, AddrInfo: 0x20, ListEntry: 0x28, State: 0x68, LocalPort: 0x6C, RemotePort: 0x6E, Owner: 0x238, CreateTime: 0),
            new UdpEndpointLayout(Size: 0x8A, InetAf: 0x20, Owner: 0x28, CreateTime: 0x58, LocalAddr: 0x60, Port: 0x80, Next: 0x88, LocalAddrDirect: false),
            s_pool7, InetAfFamily: 0x14, LocalAddressData: 0x10, PartitionSize: 0x80),
        new("win8", 6, 2, 9200, 9200, "Windows 8 / Server 2012 x64",
            s_listener8,
            new TcpEndpointLayout(0x258, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x250, CreateTime: 0),
            new UdpEndpointLayout(0x82, 0x20, 0x28, 0x58, LocalAddr: 0x60, Port: 0x80, Next: 0x88, LocalAddrDirect: false),
            s_pool8, 0x18, 0x10, 0x80),
        new("win81", 6, 3, 9600, 9600, "Windows 8.1 / Server 2012 R2 x64 (tcpip before 6.3.9600.19935)",
            s_listener8,
            new TcpEndpointLayout(0x260, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x258, CreateTime: 0),
            new UdpEndpointLayout(0x82, 0x20, 0x28, 0x58, LocalAddr: 0x60, Port: 0x78, Next: 0x70, LocalAddrDirect: false),
            s_pool81, 0x18, 0x10, 0x80),
        new("win10-1703", 10, 0, 15063, 15063, "Windows 10 1703 x64",
            s_listener10,
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x270, CreateTime: 0x268),
            s_udp10, s_pool1703, 0x18, 0x10, 0x80),
        new("win10-1709", 10, 0, 16299, 16299, "Windows 10 1709 x64",
            s_listener10,
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x270, CreateTime: 0x280),
            s_udp10, s_pool1703, 0x18, 0x10, 0x80),
        new("win10-1803", 10, 0, 17134, 17134, "Windows 10 1803 x64",
            s_listener10,
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x278, CreateTime: 0x288),
            s_udp10, s_pool1703, 0x18, 0x10, 0x80),
        new("win10-1809", 10, 0, 17763, 17763, "Windows 10 1809 / Server 2019 x64",
            s_listener10,
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x2C8, CreateTime: 0x2D8),
            s_udp10, s_pool1703, 0x18, 0x10, 0x80),
        new("win10-1903", 10, 0, 18362, 18362, "Windows 10 1903 x64 (1909 reports the same kernel build but moves the UDP port: its UDP rows are doubtful)",
            s_listener10,
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x290, CreateTime: 0x2A0),
            s_udp10, s_pool1903, 0x18, 0x10, 0x80),
        new("win10-2004", 10, 0, 19041, 19045, "Windows 10 2004-22H2 x64",
            new TcpListenerLayout(0x80, 0x28, 0x30, 0x40, 0x60, 0x72, 0x78),
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x2D8, CreateTime: 0x2E8),
            new UdpEndpointLayout(0xA8, 0x20, 0x28, 0x58, LocalAddr: 0xA8, Port: 0xA0, Next: 0x70, LocalAddrDirect: true),
            s_pool2004, 0x18, 0x10, 0xC0),
        new("server2022", 10, 0, 20348, 20348, "Server 2022 x64",
            new TcpListenerLayout(0x80, 0x28, 0x30, 0x40, 0x60, 0x72, 0x78),
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x2F0, CreateTime: 0x308),
            new UdpEndpointLayout(0xA8, 0x20, 0x28, 0x58, LocalAddr: 0xA8, Port: 0xA0, Next: 0x70, LocalAddrDirect: true),
            s_pool2004, 0x18, 0x10, 0xC0),
        new("win11-21h2", 10, 0, 22000, 22000,
            "Windows 11 21H2 x64: the Server 2022 offsets, as Volatility 3 uses for builds after its last table; not checked against a real Windows 11 capture",
            new TcpListenerLayout(0x80, 0x28, 0x30, 0x40, 0x60, 0x72, 0x78),
            new TcpEndpointLayout(0x278, 0x10, 0x18, 0x28, 0x6C, 0x70, 0x72, Owner: 0x2F0, CreateTime: 0x308),
            new UdpEndpointLayout(0xA8, 0x20, 0x28, 0x58, LocalAddr: 0xA8, Port: 0xA0, Next: 0x70, LocalAddrDirect: true),
            s_pool2004, 0x18, 0x10, 0xC0),
    ];

    /// <summary>The layout for a Windows version, or null.</summary>
    public static TcpipLayout? Find(uint major, uint minor, uint build)
        => All.FirstOrDefault(l => l.Major == major && l.Minor == minor && build >= l.FirstBuild && build <= l.LastBuild);

    /// <summary>The layout for a Windows version.</summary>
    /// <exception cref="KernelNotFoundException">The version is outside every range (the message lists them).</exception>
    public static TcpipLayout Require(WindowsVersion version)
    {
        ArgumentNullException.ThrowIfNull(version);
        return Find(version.Major, version.Minor, version.Build)
            ?? throw new KernelNotFoundException(
                $"no tcpip.sys layout for Windows {version.Major}.{version.Minor}.{version.Build} ({version.Source}); " +
                $"the layout table covers {string.Join(", ", All.Select(l => l.Builds))}");
    }
}
