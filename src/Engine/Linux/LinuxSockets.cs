using System.Buffers.Binary;
using System.Net;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>One open socket of a process (linux.sockstat).</summary>
public sealed record LinuxSocket(
    int Pid, string Comm, int Fd, string Family, string Type, string? Protocol,
    string? LocalAddress, int? LocalPort, string? RemoteAddress, int? RemotePort, string? State, ulong? Inode, string? Path, [property: Hex] ulong Sock);

/// <summary>A loaded kernel module (linux.lsmod).</summary>
/// <param name="Name">module.name.</param>
/// <param name="Base">Start of its core text (core_layout.base, or mem[MOD_TEXT].base on 6.4+); null when unreadable.</param>
/// <param name="Size">Size of that area; null when unreadable.</param>
/// <param name="Offset">Virtual address of the struct module.</param>
public sealed record LinuxModule(string Name, [property: Hex] ulong? Base, ulong? Size, [property: Hex] ulong Offset);

/// <summary>Walks file descriptor tables for sockets, and the module list.</summary>
public static class LinuxSockets
{
    private static readonly string[] s_tcpStates =
        ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"];

    private sealed class Layout(TypeModel t)
    {
        // Resolved once per walk (these are read for every VMA / socket / dentry level).
        public int FileOp { get; } = t.OptionalOffset("file", "f_op");
        public int FilePrivate { get; } = t.OptionalOffset("file", "private_data");
        public int FileInode { get; } = t.OptionalOffset("file", "f_inode");
        public int InodeIno { get; } = t.OptionalOffset("inode", "i_ino");
        public int SocketSk { get; } = t.OptionalOffset("socket", "sk");
        public int SocketType { get; } = t.OptionalOffset("socket", "type");
        public int Family { get; } = t.OptionalOffset("sock_common", "skc_family");
        public int State { get; } = t.OptionalOffset("sock_common", "skc_state");
        public int RcvSaddr { get; } = t.OptionalOffset("sock_common", "skc_rcv_saddr");
        public int Daddr { get; } = t.OptionalOffset("sock_common", "skc_daddr");
        public int Num { get; } = t.OptionalOffset("sock_common", "skc_num");
        public int Dport { get; } = t.OptionalOffset("sock_common", "skc_dport");
        public int V6Daddr { get; } = t.OptionalOffset("sock_common", "skc_v6_daddr");
        public int V6Saddr { get; } = t.OptionalOffset("sock_common", "skc_v6_rcv_saddr");
        public int SkCommon { get; } = t.OptionalOffset("sock", "__sk_common");
        public int SkProtocol { get; } = t.OptionalOffset("sock", "sk_protocol");
        public int SkType { get; } = t.OptionalOffset("sock", "sk_type");
        public int UnixAddr { get; } = t.OptionalOffset("unix_sock", "addr");
        public int UnixAddrLen { get; } = t.OptionalOffset("unix_address", "len");
        public int UnixAddrName { get; } = t.OptionalOffset("unix_address", "name");
    }

    /// <summary>Sockets held open by every process.</summary>
    public static (List<LinuxSocket> Sockets, List<string> Notes) List(LinuxContext context, CancellationToken ct = default)
    {
        var layout = new Layout(context.Types);
        var notes = new List<string>();
        var rows = new List<LinuxSocket>();
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("socket_file_ops", out ulong socketOps))
        {
            notes.Add("socket_file_ops is not in kallsyms: sockets cannot be told from other files");
            return (rows, notes);
        }
        var fdLayout = new LinuxLsof.FdLayout(context.Types);
        if (!fdLayout.Complete || layout.FileOp < 0 || layout.SocketSk < 0 || layout.Family < 0)
        {
            notes.Add($"the type information ({context.Types.Source}) lacks the file or socket layouts");
            return (rows, notes);
        }
        (List<LinuxProcess> processes, List<string> listNotes) = LinuxProcesses.List(context, ct);
        notes.AddRange(listNotes);
        foreach (LinuxProcess process in processes.Where(p => !p.KernelThread))
        {
            foreach ((int fd, ulong file) in LinuxLsof.OpenFiles(k, fdLayout, process.Offset))
            {
                if (!k.TryReadUInt64(file + (ulong)layout.FileOp, out ulong op) || op != socketOps)
                {
                    continue;
                }
                if (!k.TryReadUInt64(file + (ulong)layout.FilePrivate, out ulong socket)
                    || !k.TryReadUInt64(socket + (ulong)layout.SocketSk, out ulong sk))
                {
                    continue;
                }
                ulong? inode = layout.FileInode >= 0 && layout.InodeIno >= 0 && k.TryReadUInt64(file + (ulong)layout.FileInode, out ulong ino)
                    && k.TryReadUInt64(ino + (ulong)layout.InodeIno, out ulong number) ? number : null;
                rows.Add(Describe(k, layout, process, fd, socket, sk, inode));
            }
        }
        return (rows, notes);
    }

    private static LinuxSocket Describe(IVirtualMemory k, Layout l, LinuxProcess process, int fd, ulong socket, ulong sk, ulong? inode)
    {
        ulong common = sk + (ulong)Math.Max(0, l.SkCommon);
        ushort family = ReadU16(k, common + (ulong)l.Family) ?? 0;
        byte state = ReadU8(k, common + (ulong)l.State) ?? 0;
        ushort sockType = l.SkType >= 0 ? ReadU16(k, sk + (ulong)l.SkType) ?? 0 : (ushort)(ReadU16(k, socket + (ulong)l.SocketType) ?? 0);
        ushort protocol = l.SkProtocol >= 0 ? ReadU16(k, sk + (ulong)l.SkProtocol) ?? 0 : (ushort)0;
        string type = sockType switch { 1 => "STREAM", 2 => "DGRAM", 3 => "RAW", 4 => "RDM", 5 => "SEQPACKET", 10 => "PACKET", _ => sockType.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        ulong sockAddress = sk;
        switch (family)
        {
            case 2: // AF_INET
            {
                string? proto = protocol switch { 6 => "TCP", 17 => "UDP", 1 => "ICMP", 255 => "RAW", _ => protocol.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                string local = new IPAddress(ReadBytes(k, common + (ulong)l.RcvSaddr, 4) ?? new byte[4]).ToString();
                string remote = new IPAddress(ReadBytes(k, common + (ulong)l.Daddr, 4) ?? new byte[4]).ToString();
                return new LinuxSocket(process.Pid, process.Comm, fd, "AF_INET", type, proto, local, ReadU16(k, common + (ulong)l.Num),
                    remote, ReadPort(k, common + (ulong)l.Dport), StateName(proto, state), inode, null, sockAddress);
            }
            case 10: // AF_INET6
            {
                string? proto = protocol switch { 6 => "TCP", 17 => "UDP", 58 => "ICMPv6", 255 => "RAW", _ => protocol.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                string local = l.V6Saddr >= 0 ? new IPAddress(ReadBytes(k, common + (ulong)l.V6Saddr, 16) ?? new byte[16]).ToString() : "?";
                string remote = l.V6Daddr >= 0 ? new IPAddress(ReadBytes(k, common + (ulong)l.V6Daddr, 16) ?? new byte[16]).ToString() : "?";
                return new LinuxSocket(process.Pid, process.Comm, fd, "AF_INET6", type, proto, local, ReadU16(k, common + (ulong)l.Num),
                    remote, ReadPort(k, common + (ulong)l.Dport), StateName(proto, state), inode, null, sockAddress);
            }
            case 1: // AF_UNIX
            {
                string? path = null;
                if (l.UnixAddr >= 0 && k.TryReadUInt64(sk + (ulong)l.UnixAddr, out ulong address) && address != 0 && l.UnixAddrLen >= 0 && l.UnixAddrName >= 0
                    && k.TryReadUInt32(address + (ulong)l.UnixAddrLen, out uint length) && length > 2 && length <= 110)
                {
                    byte[]? name = ReadBytes(k, address + (ulong)l.UnixAddrName + 2, (int)length - 2);
                    if (name is not null)
                    {
                        // Abstract names start with NUL; show them with '@' as ss does.
                        path = name[0] == 0 ? "@" + Encoding.UTF8.GetString(name, 1, name.Length - 1).TrimEnd('\0') : Encoding.UTF8.GetString(name).TrimEnd('\0');
                    }
                }
                // As /proc/net/unix derives it: listening, or connected when sk_state is TCP_ESTABLISHED.
                string unixState = state == 10 ? "LISTEN" : state == 1 ? "CONNECTED" : "UNCONNECTED";
                return new LinuxSocket(process.Pid, process.Comm, fd, "AF_UNIX", type, null, null, null, null, null, unixState, inode, path, sockAddress);
            }
            default:
                return new LinuxSocket(process.Pid, process.Comm, fd, FamilyName(family), type, protocol == 0 ? null : protocol.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    null, null, null, null, null, inode, null, sockAddress);
        }
    }

    private static string FamilyName(ushort family) => family switch
    {
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        40 => "AF_VSOCK",
        44 => "AF_XDP",
        _ => $"AF_{family}",
    };

    private static string? StateName(string? protocol, byte state)
    {
        if (protocol == "UDP")
        {
            return state switch { 1 => "ESTABLISHED", 7 => "UNCONN", _ => state.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        }
        return state < s_tcpStates.Length ? s_tcpStates[state] : state.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static byte[]? ReadBytes(IVirtualMemory k, ulong va, int length)
    {
        byte[] b = new byte[length];
        return k.Read(va, b) == length ? b : null;
    }

    internal static ushort? ReadU16(IVirtualMemory k, ulong va) => ReadBytes(k, va, 2) is { } b ? BinaryPrimitives.ReadUInt16LittleEndian(b) : null;

    private static int? ReadPort(IVirtualMemory k, ulong va) => ReadBytes(k, va, 2) is { } b ? BinaryPrimitives.ReadUInt16BigEndian(b) : null;

    internal static byte? ReadU8(IVirtualMemory k, ulong va) => ReadBytes(k, va, 1) is { } b ? b[0] : null;

    /// <summary>Modules on the kernel's module list.</summary>
    public static (List<LinuxModule> Modules, List<string> Notes) Modules(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxModule>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("modules", out ulong head) || !t.TryGetOffset("module", "list", out int listOffset)
            || !t.TryGetOffset("module", "name", out int nameOffset))
        {
            notes.Add("the module list (symbol 'modules', module.list, module.name) is not available");
            return (rows, notes);
        }
        ModuleCoreLayout? core = ModuleCoreLayout.Resolve(t);
        foreach (ulong entry in context.WalkList(head, "module list", "modules", AnalysisLimits.Default.MaxKernelModules, notes, ct))
        {
            ulong module = entry - (ulong)listOffset;
            string name = k.ReadCString(module + (ulong)nameOffset, 56) ?? "?";
            ulong? moduleBase = null, size = null;
            if (core is not null && core.TryRead(k, module, out ulong b, out ulong s))
            {
                moduleBase = b;
                size = s;
            }
            rows.Add(new LinuxModule(name, moduleBase, size, module));
        }
        return (rows, notes);
    }
}
