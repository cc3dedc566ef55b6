using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>RFC 2863 operational state of an interface (net_device.operstate, include/uapi/linux/if.h IF_OPER_*).</summary>
public enum LinuxOperState
{
    /// <summary>IF_OPER_UNKNOWN (loopback and dummy devices report it).</summary>
    Unknown = 0,
    /// <summary>IF_OPER_NOTPRESENT.</summary>
    NotPresent = 1,
    /// <summary>IF_OPER_DOWN.</summary>
    Down = 2,
    /// <summary>IF_OPER_LOWERLAYERDOWN.</summary>
    LowerLayerDown = 3,
    /// <summary>IF_OPER_TESTING.</summary>
    Testing = 4,
    /// <summary>IF_OPER_DORMANT.</summary>
    Dormant = 5,
    /// <summary>IF_OPER_UP.</summary>
    Up = 6,
}

/// <summary>A network interface (linux.ip.link), as <c>ip link</c> shows it.</summary>
/// <param name="NetNs">Inode number of its network namespace (net.ns.inum, as in net:[N]); null when unreadable.</param>
/// <param name="Index">net_device.ifindex.</param>
/// <param name="Name">net_device.name.</param>
/// <param name="Mac">Hardware address (dev_addr, addr_len bytes, colon-separated), null when the device has none.</param>
/// <param name="LinkType">ether, loopback, none, or the ARPHRD_* number.</param>
/// <param name="Mtu">net_device.mtu.</param>
/// <param name="Flags">The flags as <c>ip link</c> prints them (UP, LOWER_UP from the carrier, RUNNING left out).</param>
/// <param name="FlagBits">net_device.flags as stored (IFF_* bits).</param>
/// <param name="OperState">net_device.operstate, null when unreadable.</param>
/// <param name="Qdisc">Id of the root queueing discipline (noqueue, pfifo_fast, mq), null when unreadable.</param>
/// <param name="TxQueueLength">net_device.tx_queue_len (ip's qlen).</param>
/// <param name="Promiscuous">IFF_PROMISC set or promiscuity above zero (a sniffer).</param>
/// <param name="Device">The struct net_device.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxInterface(uint? NetNs, int Index, string Name, string? Mac, string LinkType, uint? Mtu, string Flags, [property: Hex] uint FlagBits,
    LinuxOperState? OperState, string? Qdisc, uint? TxQueueLength, bool Promiscuous, [property: Hex] ulong Device, string? Doubt);

/// <summary>An address of a network interface (linux.ip.addr), as <c>ip addr</c> shows it.</summary>
/// <param name="NetNs">Inode number of the interface's network namespace.</param>
/// <param name="Index">The interface's ifindex.</param>
/// <param name="Interface">The interface's name.</param>
/// <param name="Family">inet or inet6.</param>
/// <param name="Address">The address (IPv4 ifa_local, IPv6 inet6_ifaddr.addr).</param>
/// <param name="PrefixLength">Prefix length.</param>
/// <param name="Scope">host, link, site, global (or the number).</param>
/// <param name="Label">IPv4 label (ifa_label, e.g. "eth0:1"); null for IPv6.</param>
/// <param name="Mac">The interface's hardware address (to join addresses to links without a second plugin).</param>
/// <param name="Entry">The struct in_ifaddr or inet6_ifaddr.</param>
public sealed record LinuxInterfaceAddress(uint? NetNs, int Index, string Interface, string Family, string Address, int PrefixLength, string Scope,
    string? Label, string? Mac, [property: Hex] ulong Entry);

/// <summary>
/// Network interfaces and their addresses per network namespace: net_namespace_list, each namespace's dev_base_head list
/// of net_device, IPv4 addresses from in_device.ifa_list and IPv6 addresses from inet6_dev.addr_list. Named as Volatility 3
/// names the same plugins (linux.ip.Link and linux.ip.Addr), so that rows can be compared one for one.
/// </summary>
public static class LinuxInterfaces
{
    private const int MaxNamespaces = 65_536;
    private const int MaxDevices = 65_536;
    private const int MaxAddresses = 65_536;
    private const uint IffUp = 0x1, IffRunning = 0x40, IffPromisc = 0x100, IffAllMulti = 0x200, IffLowerUp = 0x10000, IffDormant = 0x20000;
    private const int LinkStateStart = 0, LinkStateNoCarrier = 2, LinkStateDormant = 4; // enum netdev_state_t bits

    private static readonly string[] s_flagNames =
    [
        "UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING", "NOARP", "PROMISC", "ALLMULTI",
        "MASTER", "SLAVE", "MULTICAST", "PORTSEL", "AUTOMEDIA", "DYNAMIC", "LOWER_UP", "DORMANT", "ECHO",
    ];

    // The order iproute2 prints flags in (print_link_flags), by bit.
    private static readonly int[] s_printOrder = [4, 1, 3, 7, 5, 8, 9, 2, 12, 13, 14, 15, 10, 11, 0, 16, 17, 18];

    private sealed class Layout(TypeModel t)
    {
        public int NetList { get; } = t.OptionalOffset("net", "list");
        public int NetInum { get; } = t.OptionalOffset("net", "ns.inum");
        public int NetDevBase { get; } = t.OptionalOffset("net", "dev_base_head");
        public int DevList { get; } = t.OptionalOffset("net_device", "dev_list");
        public int DevName { get; } = t.OptionalOffset("net_device", "name");
        public int DevIndex { get; } = t.OptionalOffset("net_device", "ifindex");
        public int DevMtu { get; } = t.OptionalOffset("net_device", "mtu");
        public int DevFlags { get; } = t.OptionalOffset("net_device", "flags");
        public int DevGflags { get; } = t.OptionalOffset("net_device", "gflags");
        public int DevPromiscuity { get; } = t.OptionalOffset("net_device", "promiscuity");
        public int DevState { get; } = t.OptionalOffset("net_device", "state");
        public int DevOperState { get; } = t.OptionalOffset("net_device", "operstate");
        public int DevType { get; } = t.OptionalOffset("net_device", "type");
        public int DevAddrLen { get; } = t.OptionalOffset("net_device", "addr_len");
        public int DevAddr { get; } = t.OptionalOffset("net_device", "dev_addr");
        public bool DevAddrIsPointer { get; } = t.FindField("net_device", "dev_addr")?.Type.Resolve().Kind == TypeKind.Pointer;
        public int DevIp { get; } = t.OptionalOffset("net_device", "ip_ptr");
        public int DevIp6 { get; } = t.OptionalOffset("net_device", "ip6_ptr");
        public int DevQdisc { get; } = t.OptionalOffset("net_device", "qdisc");
        public int DevTxQueueLen { get; } = t.OptionalOffset("net_device", "tx_queue_len");
        public int QdiscOps { get; } = t.OptionalOffset("Qdisc", "ops");
        public int QdiscOpsId { get; } = t.OptionalOffset("Qdisc_ops", "id");
        public int InIfaList { get; } = t.OptionalOffset("in_device", "ifa_list");
        public int IfaNext { get; } = t.OptionalOffset("in_ifaddr", "ifa_next");
        public int IfaLocal { get; } = t.OptionalOffset("in_ifaddr", "ifa_local");
        public int IfaPrefix { get; } = t.OptionalOffset("in_ifaddr", "ifa_prefixlen");
        public int IfaScope { get; } = t.OptionalOffset("in_ifaddr", "ifa_scope");
        public int IfaLabel { get; } = t.OptionalOffset("in_ifaddr", "ifa_label");
        public int In6AddrList { get; } = t.OptionalOffset("inet6_dev", "addr_list");
        public int If6List { get; } = t.OptionalOffset("inet6_ifaddr", "if_list");
        public int If6Addr { get; } = t.OptionalOffset("inet6_ifaddr", "addr");
        public int If6Prefix { get; } = t.OptionalOffset("inet6_ifaddr", "prefix_len");
        public int If6Scope { get; } = t.OptionalOffset("inet6_ifaddr", "scope");
    }

    /// <summary>linux.ip.link: every interface of every network namespace.</summary>
    public static RowsReport<LinuxInterface> Links(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxInterface> links, _, List<string> notes) = Walk(context, addresses: false, ct);
        return new RowsReport<LinuxInterface>("linux.ip.link", links, notes);
    }

    /// <summary>linux.ip.addr: every IPv4 and IPv6 address of every interface of every network namespace.</summary>
    public static RowsReport<LinuxInterfaceAddress> Addresses(LinuxContext context, CancellationToken ct = default)
    {
        (_, List<LinuxInterfaceAddress> addresses, List<string> notes) = Walk(context, addresses: true, ct);
        return new RowsReport<LinuxInterfaceAddress>("linux.ip.addr", addresses, notes);
    }

    private static (List<LinuxInterface>, List<LinuxInterfaceAddress>, List<string>) Walk(LinuxContext context, bool addresses, CancellationToken ct)
    {
        var l = new Layout(context.Types);
        var notes = new List<string>();
        var links = new List<LinuxInterface>();
        var rows = new List<LinuxInterfaceAddress>();
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("net_namespace_list", out ulong head) || l.NetList < 0 || l.NetDevBase < 0 || l.DevList < 0
            || l.DevName < 0 || l.DevIndex < 0)
        {
            notes.Add($"net_namespace_list (kallsyms) or struct net.list/dev_base_head, net_device.dev_list/name/ifindex ({context.Types.Source}) is not available");
            return (links, rows, notes);
        }
        foreach (ulong netLink in context.WalkList(head, "network namespaces (net_namespace_list)", "network namespaces", MaxNamespaces, notes, ct))
        {
            ulong net = netLink - (ulong)l.NetList;
            uint? inum = l.NetInum >= 0 && k.TryReadUInt32(net + (ulong)l.NetInum, out uint n) ? n : null;
            foreach (ulong devLink in context.WalkList(net + (ulong)l.NetDevBase, $"devices of net 0x{net:X}", "network devices", MaxDevices, notes, ct))
            {
                ct.ThrowIfCancellationRequested();
                LinuxInterface link = Device(k, l, inum, devLink - (ulong)l.DevList);
                links.Add(link);
                if (addresses)
                {
                    Ipv4(context, l, link, rows, notes, ct);
                    Ipv6(context, l, link, rows, notes, ct);
                }
            }
        }
        return (links, rows, notes);
    }

    private static LinuxInterface Device(IVirtualMemory k, Layout l, uint? netNs, ulong dev)
    {
        var doubts = new List<string>();
        string name = k.ReadCString(dev + (ulong)l.DevName, 16) ?? "?";
        int index = k.TryReadUInt32(dev + (ulong)l.DevIndex, out uint i) ? (int)i : 0;
        if (name == "?" || index == 0)
        {
            doubts.Add("name or ifindex unreadable");
        }
        uint? mtu = l.DevMtu >= 0 && k.TryReadUInt32(dev + (ulong)l.DevMtu, out uint m) ? m : null;
        uint flags = l.DevFlags >= 0 && k.TryReadUInt32(dev + (ulong)l.DevFlags, out uint f) ? f : 0;
        ushort gflags = l.DevGflags >= 0 ? LinuxSockets.ReadU16(k, dev + (ulong)l.DevGflags) ?? 0 : (ushort)0;
        uint promiscuity = l.DevPromiscuity >= 0 && k.TryReadUInt32(dev + (ulong)l.DevPromiscuity, out uint p) ? p : 0;
        ulong state = l.DevState >= 0 && k.TryReadUInt64(dev + (ulong)l.DevState, out ulong s) ? s : 0;
        byte? oper = l.DevOperState >= 0 ? LinuxSockets.ReadU8(k, dev + (ulong)l.DevOperState) : null;
        ushort type = l.DevType >= 0 ? LinuxSockets.ReadU16(k, dev + (ulong)l.DevType) ?? 0 : (ushort)0;
        string? mac = Mac(k, l, dev);
        string? qdisc = null;
        if (l.DevQdisc >= 0 && l.QdiscOps >= 0 && l.QdiscOpsId >= 0 && k.TryReadUInt64(dev + (ulong)l.DevQdisc, out ulong q) && q != 0
            && k.TryReadUInt64(q + (ulong)l.QdiscOps, out ulong ops) && ops != 0)
        {
            qdisc = k.ReadCString(ops + (ulong)l.QdiscOpsId, 16);
        }
        uint? txQueue = l.DevTxQueueLen >= 0 && k.TryReadUInt32(dev + (ulong)l.DevTxQueueLen, out uint tq) ? tq : null;
        uint shown = ShownFlags(flags, gflags, state);
        string linkType = type switch { 1 => "ether", 772 => "loopback", 65534 => "none", _ => type.ToString(CultureInfo.InvariantCulture) };
        return new LinuxInterface(netNs, index, name, mac, linkType, mtu, FlagText(shown), flags,
            oper is byte o && o <= 6 ? (LinuxOperState)o : null, qdisc, txQueue, (flags & IffPromisc) != 0 || promiscuity > 0, dev,
            doubts.Count == 0 ? null : string.Join("; ", doubts));
    }

    // As dev_get_flags(): RUNNING, LOWER_UP and DORMANT come from the device state, PROMISC and ALLMULTI from gflags.
    private static uint ShownFlags(uint flags, ushort gflags, ulong state)
    {
        uint shown = (flags & ~(IffPromisc | IffAllMulti | IffRunning | IffLowerUp | IffDormant)) | (gflags & (IffPromisc | IffAllMulti));
        if ((state & (1UL << LinkStateStart)) != 0)
        {
            bool carrier = (state & (1UL << LinkStateNoCarrier)) == 0;
            bool dormant = (state & (1UL << LinkStateDormant)) != 0;
            shown |= carrier ? IffLowerUp : 0;
            shown |= carrier && !dormant ? IffRunning : 0;
            shown |= dormant ? IffDormant : 0;
        }
        return shown;
    }

    // iproute2 leaves RUNNING out and says NO-CARRIER for an interface that is up without a carrier.
    private static string FlagText(uint flags)
    {
        var names = new List<string>();
        if ((flags & IffUp) != 0 && (flags & IffLowerUp) == 0)
        {
            names.Add("NO-CARRIER");
        }
        foreach (int bit in s_printOrder)
        {
            if ((flags & (1u << bit)) != 0)
            {
                names.Add(s_flagNames[bit]);
            }
        }
        for (int bit = s_flagNames.Length; bit < 32; bit++)
        {
            if ((flags & (1u << bit)) != 0)
            {
                names.Add($"0x{1u << bit:x}");
            }
        }
        return string.Join(',', names);
    }

    private static string? Mac(IVirtualMemory k, Layout l, ulong dev)
    {
        if (l.DevAddr < 0 || l.DevAddrLen < 0 || LinuxSockets.ReadU8(k, dev + (ulong)l.DevAddrLen) is not byte length || length == 0 || length > 32)
        {
            return null;
        }
        ulong at = dev + (ulong)l.DevAddr;
        if (l.DevAddrIsPointer && (!k.TryReadUInt64(at, out at) || at == 0))
        {
            return null;
        }
        byte[]? bytes = LinuxSockets.ReadBytes(k, at, length);
        return bytes is null ? null : string.Join(':', bytes.Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
    }

    private static void Ipv4(LinuxContext context, Layout l, LinuxInterface link, List<LinuxInterfaceAddress> rows, List<string> notes, CancellationToken ct)
    {
        IVirtualMemory k = context.Kernel.Kernel;
        if (l.DevIp < 0 || l.InIfaList < 0 || l.IfaNext < 0 || l.IfaLocal < 0 || l.IfaPrefix < 0
            || !k.TryReadUInt64(link.Device + (ulong)l.DevIp, out ulong inDevice) || inDevice == 0
            || !k.TryReadUInt64(inDevice + (ulong)l.InIfaList, out ulong first) || first == 0)
        {
            return;
        }
        ListWalk walk = KernelLists.Linear(k, first, $"IPv4 addresses of {link.Name}", MaxAddresses, KernelLists.IsKernelAddress, nextOffset: l.IfaNext,
            cancellationToken: ct);
        if (walk.Note is not null)
        {
            notes.Add($"{link.Name}: {walk.Note}");
        }
        foreach (ulong entry in walk.Entries)
        {
            if (LinuxSockets.ReadBytes(k, entry + (ulong)l.IfaLocal, 4) is not { } local || LinuxSockets.ReadU8(k, entry + (ulong)l.IfaPrefix) is not byte prefix)
            {
                notes.Add($"{link.Name}: in_ifaddr at 0x{entry:X} unreadable");
                continue;
            }
            byte scope = l.IfaScope >= 0 ? LinuxSockets.ReadU8(k, entry + (ulong)l.IfaScope) ?? 0 : (byte)0;
            string? label = l.IfaLabel >= 0 ? k.ReadCString(entry + (ulong)l.IfaLabel, 16) : null;
            rows.Add(new LinuxInterfaceAddress(link.NetNs, link.Index, link.Name, "inet", new IPAddress(local).ToString(), prefix,
                scope switch { 0 => "global", 200 => "site", 253 => "link", 254 => "host", 255 => "nowhere", _ => scope.ToString(CultureInfo.InvariantCulture) },
                label, link.Mac, entry));
        }
    }

    private static void Ipv6(LinuxContext context, Layout l, LinuxInterface link, List<LinuxInterfaceAddress> rows, List<string> notes, CancellationToken ct)
    {
        IVirtualMemory k = context.Kernel.Kernel;
        if (l.DevIp6 < 0 || l.In6AddrList < 0 || l.If6List < 0 || l.If6Addr < 0 || l.If6Prefix < 0
            || !k.TryReadUInt64(link.Device + (ulong)l.DevIp6, out ulong inet6) || inet6 == 0)
        {
            return;
        }
        foreach (ulong entryLink in context.WalkList(inet6 + (ulong)l.In6AddrList, $"IPv6 addresses of {link.Name}", "IPv6 addresses", MaxAddresses, notes, ct))
        {
            ulong entry = entryLink - (ulong)l.If6List;
            if (LinuxSockets.ReadBytes(k, entry + (ulong)l.If6Addr, 16) is not { } address || !k.TryReadUInt32(entry + (ulong)l.If6Prefix, out uint prefix) || prefix > 128)
            {
                notes.Add($"{link.Name}: inet6_ifaddr at 0x{entry:X} unreadable");
                continue;
            }
            // inet6_ifaddr.scope holds IPV6_ADDR_* scope bits; rtnetlink reports them as these RT_SCOPE names.
            uint scope = l.If6Scope >= 0 && k.TryReadUInt32(entry + (ulong)l.If6Scope, out uint s) ? s : 0;
            string scopeName = (scope & 0x10) != 0 ? "host" : (scope & 0x20) != 0 ? "link" : (scope & 0x40) != 0 ? "site" : "global";
            rows.Add(new LinuxInterfaceAddress(link.NetNs, link.Index, link.Name, "inet6", new IPAddress(address).ToString(), (int)prefix, scopeName,
                null, link.Mac, entry));
        }
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.ip.link", "Network interfaces per network namespace: index, name, MAC, MTU, flags, operational state, qdisc", TargetOs.Linux,
            PluginInputs.None, (c, a, ct) => Links(c.Linux(ct), ct));
        PluginRegistry.Register("linux.ip.addr", "IPv4 and IPv6 addresses of every interface per network namespace, with prefix length and scope", TargetOs.Linux,
            PluginInputs.None, (c, a, ct) => Addresses(c.Linux(ct), ct));
    }
}
