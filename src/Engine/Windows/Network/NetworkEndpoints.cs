using System.Buffers.Binary;
using System.Net;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;

namespace CloudMem.Engine.Windows.Network;

/// <summary>TCP states as tcpip.sys numbers them.</summary>
public enum TcpState
{
    /// <summary>No connection (MIB_TCP_STATE_CLOSED).</summary>
    Closed = 0,
    /// <summary>Waiting for connections.</summary>
    Listening = 1,
    /// <summary>SYN sent, waiting for the peer's SYN-ACK.</summary>
    SynSent = 2,
    /// <summary>SYN received, waiting for the final ACK.</summary>
    SynRcvd = 3,
    /// <summary>Connection open.</summary>
    Established = 4,
    /// <summary>Local close sent FIN, waiting for its ACK.</summary>
    FinWait1 = 5,
    /// <summary>FIN acknowledged, waiting for the peer's FIN.</summary>
    FinWait2 = 6,
    /// <summary>Peer closed, waiting for the local close.</summary>
    CloseWait = 7,
    /// <summary>Both sides closed at once, waiting for the last ACK.</summary>
    Closing = 8,
    /// <summary>Local close after the peer's, waiting for the last ACK.</summary>
    LastAck = 9,
    /// <summary>Closed, kept so late segments are absorbed.</summary>
    TimeWait = 12,
    /// <summary>The transmission control block is being deleted.</summary>
    DeleteTcb = 13,
}

/// <summary>The kind of tcpip.sys object an endpoint row was read from.</summary>
public enum NetObjectKind
{
    /// <summary>A TCP listener ('TcpL').</summary>
    TcpListener,
    /// <summary>A TCP endpoint (connection, 'TcpE').</summary>
    TcpEndpoint,
    /// <summary>A UDP endpoint ('UdpA').</summary>
    UdpEndpoint,
}

/// <summary>One windows.netscan row: a network object found by pool scan.</summary>
/// <param name="Offset">Physical address of the object (after its pool header).</param>
/// <param name="Proto">TCPv4, TCPv6, UDPv4 or UDPv6.</param>
/// <param name="LocalAddr">Local address (0.0.0.0 / :: when not bound to one); null when it does not read.</param>
/// <param name="ForeignAddr">Remote address; "*" for UDP; null when it does not read.</param>
/// <param name="State">TCP state (Listening for listeners); null for UDP.</param>
/// <param name="Pid">Owner's UniqueProcessId; null when the owning _EPROCESS does not read.</param>
/// <param name="Owner">Owner's ImageFileName.</param>
/// <param name="Created">CreateTime of the object.</param>
/// <param name="InNetstat">True when the same object is reachable from tcpip's partition table or port pools (windows.netstat);
/// false for an object that is unlinked (closed, or hidden); null when netstat's walk could not be made (see the notes).</param>
/// <param name="Kind">The object type.</param>
/// <param name="Doubt">Why a value is missing or questionable.</param>
/// <param name="ForeignPort">Remote port (0 for listeners and UDP).</param>
/// <param name="LocalPort">Local port.</param>
public sealed record WindowsNetScanRow(
    [property: Hex] ulong Offset, string Proto, string? LocalAddr, int LocalPort, string? ForeignAddr, int ForeignPort,
    TcpState? State, long? Pid, string? Owner, DateTimeOffset? Created, bool? InNetstat, NetObjectKind Kind, string? Doubt);

/// <summary>One windows.netstat row: a network object reached from tcpip.sys's own tables.</summary>
/// <param name="Offset">Virtual address of the object.</param>
/// <param name="Source">Where it was found: PartitionTable (TCP connections), TcpPortPool (listeners), UdpPortPool.</param>
/// <param name="ForeignPort">Remote port (0 for listeners and UDP).</param>
/// <param name="Proto">TCPv4, TCPv6, UDPv4 or UDPv6.</param>
/// <param name="LocalAddr">Local address; null when it does not read.</param>
/// <param name="LocalPort">Local port.</param>
/// <param name="ForeignAddr">Remote address; "*" for UDP; null when it does not read.</param>
/// <param name="Kind">The object type.</param>
/// <param name="Doubt">Why a value is missing or questionable.</param>
/// <param name="State">TCP state (Listening for listeners); null for UDP.</param>
/// <param name="Pid">Owner's UniqueProcessId; null when the owning _EPROCESS does not read.</param>
/// <param name="Owner">Owner's ImageFileName.</param>
/// <param name="Created">CreateTime of the object.</param>
public sealed record WindowsNetStatRow(
    [property: Hex] ulong Offset, string Proto, string? LocalAddr, int LocalPort, string? ForeignAddr, int ForeignPort,
    TcpState? State, long? Pid, string? Owner, DateTimeOffset? Created, string Source, NetObjectKind Kind, string? Doubt);

/// <summary>A decoded network object (one per address family for dual-stack listeners and UDP endpoints).</summary>
internal sealed record NetEndpoint(
    NetObjectKind Kind, string Proto, string? LocalAddr, int LocalPort, string? ForeignAddr, int ForeignPort,
    TcpState? State, long? Pid, string? Owner, DateTimeOffset? Created, string? Doubt);

/// <summary>
/// Decodes tcpip.sys objects from their bytes with a <see cref="TcpipLayout"/>; pointers inside them are followed in the
/// kernel address space. Validity follows tcpip's invariants: the address family record says IPv4 (2) or IPv6 (0x17);
/// a TCP endpoint's state is a known state and it has a local address or an owner with a plausible pid.
/// </summary>
internal sealed class NetworkDecoder(WindowsKernel kernel, TcpipLayout layout)
{
    private const ushort AfInet = 2, AfInet6 = 0x17;
    private static readonly DateTimeOffset s_earliest = new(1950, 1, 1, 0, 0, 0, TimeSpan.Zero), s_latest = new(2200, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly AddressSpace _space = kernel.Kernel;
    private readonly Dictionary<ulong, WindowsProcess?> _owners = [];

    public TcpipLayout Layout => layout;

    /// <summary>The rows of one object, or none when it is not a valid object of that kind.</summary>
    public IReadOnlyList<NetEndpoint> Decode(NetObjectKind kind, ReadOnlySpan<byte> body) => kind switch
    {
        NetObjectKind.TcpListener => DecodeBound(kind, body, layout.Listener.InetAf, layout.Listener.LocalAddr, direct: false,
            layout.Listener.Port, layout.Listener.Owner, layout.Listener.CreateTime),
        NetObjectKind.TcpEndpoint => DecodeConnection(body),
        _ => DecodeBound(kind, body, layout.Udp.InetAf, layout.Udp.LocalAddr, layout.Udp.LocalAddrDirect,
            layout.Udp.Port, layout.Udp.Owner, layout.Udp.CreateTime),
    };

    /// <summary>A listener or UDP endpoint: bound to one address, or to every address of its family (then an IPv6
    /// socket is dual-stack and also takes IPv4: one row per family).</summary>
    private List<NetEndpoint> DecodeBound(NetObjectKind kind, ReadOnlySpan<byte> b, int inetAf, int localAddr, bool direct, int port, int owner, int created)
    {
        var rows = new List<NetEndpoint>(2);
        if (Family(U64(b, inetAf)) is not ushort family)
        {
            return rows;
        }
        (long? pid, string? name, string? doubt) = Owner(U64(b, owner));
        DateTimeOffset? time = Time(U64(b, created));
        int localPort = BinaryPrimitives.ReadUInt16BigEndian(b[port..]);
        bool tcp = kind == NetObjectKind.TcpListener;
        string prefix = tcp ? "TCP" : "UDP";
        TcpState? state = tcp ? TcpState.Listening : null;
        ulong record = U64(b, localAddr);
        byte[]? bound = record == 0 ? null : LocalAddress(record, direct, family);
        if (bound is not null)
        {
            bool v6 = family == AfInet6;
            rows.Add(new NetEndpoint(kind, prefix + (v6 ? "v6" : "v4"), Text(bound, v6), localPort, tcp ? (v6 ? "::" : "0.0.0.0") : "*", 0, state, pid, name, time, doubt));
            return rows;
        }
        string? unbound = record == 0 ? null : $"local address record at 0x{record:X} does not read; shown as unbound";
        string? why = Join(doubt, unbound);
        rows.Add(new NetEndpoint(kind, prefix + "v4", "0.0.0.0", localPort, tcp ? "0.0.0.0" : "*", 0, state, pid, name, time, why));
        if (family == AfInet6)
        {
            rows.Add(new NetEndpoint(kind, prefix + "v6", "::", localPort, tcp ? "::" : "*", 0, state, pid, name, time, why));
        }
        return rows;
    }

    private List<NetEndpoint> DecodeConnection(ReadOnlySpan<byte> b)
    {
        TcpEndpointLayout l = layout.Endpoint;
        uint rawState = BinaryPrimitives.ReadUInt32LittleEndian(b[l.State..]);
        if (!Enum.IsDefined((TcpState)rawState) || Family(U64(b, l.InetAf)) is not ushort family)
        {
            return [];
        }
        bool v6 = family == AfInet6;
        string? local = null, remote = null;
        var doubts = new List<string>();
        ulong info = U64(b, l.AddrInfo);
        var reader = new WindowsMemoryReader(_space);
        if (info != 0 && reader.TryUInt64(info + TcpipLayout.AddrInfoLocal, out ulong localRecord) && localRecord != 0
            && LocalAddress(localRecord, direct: false, family) is byte[] localBytes)
        {
            local = Text(localBytes, v6);
        }
        else
        {
            doubts.Add("local address does not read");
        }
        byte[] remoteBytes = new byte[v6 ? 16 : 4];
        if (info != 0 && reader.TryUInt64(info + TcpipLayout.AddrInfoRemote, out ulong remoteAt) && remoteAt != 0 && reader.TryRead(remoteAt, remoteBytes))
        {
            remote = Text(remoteBytes, v6);
        }
        else
        {
            doubts.Add("remote address does not read");
        }
        (long? pid, string? name, string? ownerDoubt) = Owner(U64(b, l.Owner));
        if (local is null && (pid is null or 0 or > 65535))
        {
            return [];   // neither an address nor a plausible owner: not an endpoint
        }
        if (ownerDoubt is not null)
        {
            doubts.Add(ownerDoubt);
        }
        return [new NetEndpoint(NetObjectKind.TcpEndpoint, v6 ? "TCPv6" : "TCPv4", local, BinaryPrimitives.ReadUInt16BigEndian(b[l.LocalPort..]),
            remote, BinaryPrimitives.ReadUInt16BigEndian(b[l.RemotePort..]), (TcpState)rawState, pid, name, Time(U64(b, l.CreateTime)),
            doubts.Count == 0 ? null : string.Join("; ", doubts))];
    }

    /// <summary>The address family of the record at <paramref name="inetAf"/>, when it reads and is IPv4 or IPv6.</summary>
    private ushort? Family(ulong inetAf)
    {
        var reader = new WindowsMemoryReader(_space);
        return WindowsObjectManager.IsKernelPointer(inetAf) && reader.TryUInt16(inetAf + (ulong)layout.InetAfFamily, out ushort family)
            && family is AfInet or AfInet6 ? family : null;
    }

    /// <summary>The address a local-address record points to (directly, or through one more pointer).</summary>
    private byte[]? LocalAddress(ulong record, bool direct, ushort family)
    {
        var reader = new WindowsMemoryReader(_space);
        byte[] address = new byte[family == AfInet6 ? 16 : 4];
        if (!reader.TryUInt64(record + (direct ? 0UL : (ulong)layout.LocalAddressData), out ulong data) || data == 0)
        {
            return null;
        }
        if (!direct && (!reader.TryUInt64(data, out data) || data == 0))
        {
            return null;
        }
        return reader.TryRead(data, address) ? address : null;
    }

    private (long? Pid, string? Name, string? Doubt) Owner(ulong eprocess)
    {
        if (eprocess == 0)
        {
            return (null, null, "no owner process");
        }
        if (!_owners.TryGetValue(eprocess, out WindowsProcess? process))
        {
            process = WindowsObjectManager.IsKernelPointer(eprocess) ? kernel.ProcessAt(eprocess) : null;
            _owners[eprocess] = process;
        }
        return process is null ? (null, null, $"owner _EPROCESS at 0x{eprocess:X} does not read") : (process.Pid, process.ImageFileName, null);
    }

    private static DateTimeOffset? Time(ulong fileTime)
        => WindowsProcesses.FileTime(fileTime) is DateTimeOffset t && t.UtcDateTime > s_earliest && t.UtcDateTime < s_latest ? t : null;

    private static string Text(byte[] address, bool v6) => new IPAddress(v6 ? address : address[..4]).ToString();

    private static string? Join(string? a, string? b) => a is null ? b : b is null ? a : a + "; " + b;

    private static ulong U64(ReadOnlySpan<byte> b, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(b[offset..]);
}
