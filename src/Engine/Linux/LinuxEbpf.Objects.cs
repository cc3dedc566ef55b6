using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>An eBPF map (linux.ebpf.maps), as bpftool map shows it.</summary>
/// <param name="Id">bpf_map.id (the index in map_idr).</param>
/// <param name="Type">The map type's kernel name without its prefix (ARRAY, HASH, RINGBUF, PROG_ARRAY), or the number.</param>
/// <param name="Name">bpf_map.name (at most 15 characters; empty when the creator gave none).</param>
/// <param name="KeySize">bpf_map.key_size in bytes.</param>
/// <param name="ValueSize">bpf_map.value_size in bytes.</param>
/// <param name="MaxEntries">bpf_map.max_entries.</param>
/// <param name="Flags">bpf_map.map_flags (BPF_F_*).</param>
/// <param name="Map">The struct bpf_map.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxBpfMap(int Id, string Type, string Name, uint? KeySize, uint? ValueSize, uint? MaxEntries, [property: Hex] uint? Flags,
    [property: Hex] ulong Map, string? Doubt);

/// <summary>An eBPF link (linux.ebpf.links): what keeps a program attached, as bpftool link shows it.</summary>
/// <param name="Id">bpf_link.id (the index in link_idr).</param>
/// <param name="Type">The link type's kernel name without its prefix (RAW_TRACEPOINT, TRACING, CGROUP, XDP, PERF_EVENT, KPROBE_MULTI), or the number.</param>
/// <param name="ProgramId">The attached program's bpf_prog_aux.id, null when unreadable.</param>
/// <param name="ProgramName">The attached program's name.</param>
/// <param name="ProgramType">The attached program's type, as linux.ebpf shows it.</param>
/// <param name="Target">For a raw tracepoint link the tracepoint's name, else null.</param>
/// <param name="Link">The struct bpf_link.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxBpfLink(int Id, string Type, int? ProgramId, string? ProgramName, string? ProgramType, string? Target,
    [property: Hex] ulong Link, string? Doubt);

/// <summary>linux.ebpf.maps and linux.ebpf.links: the kernel's map_idr and link_idr, read like prog_idr.</summary>
public static partial class LinuxEbpf
{
    /// <summary>linux.ebpf.maps.</summary>
    public static RowsReport<LinuxBpfMap> Maps(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxBpfMap>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        int O(string f) => t.OptionalOffset("bpf_map", f);
        int mapType = O("map_type"), keySize = O("key_size"), valueSize = O("value_size"), maxEntries = O("max_entries"), flags = O("map_flags"),
            id = O("id"), name = O("name");
        if (mapType < 0 || id < 0 || Idr(context, "map_idr", notes) is not { } idr)
        {
            notes.Add($"map_idr (kallsyms; a kernel without CONFIG_BPF_SYSCALL?) or idr, xa_node, bpf_map.map_type/id ({t.Source}) is not available");
            return new RowsReport<LinuxBpfMap>("linux.ebpf.maps", rows, notes);
        }
        IReadOnlyDictionary<string, long> types = EnumValues(t, "bpf_map_type");
        uint? U32(ulong at, int offset) => offset >= 0 && k.TryReadUInt32(at + (ulong)offset, out uint v) ? v : null;
        foreach ((int index, ulong map) in idr)
        {
            ct.ThrowIfCancellationRequested();
            string? doubt = U32(map, id) is uint mapId && mapId != index ? $"bpf_map.id {mapId} is not its IDR index {index}"
                : U32(map, mapType) is null ? "bpf_map unreadable" : null;
            rows.Add(new LinuxBpfMap(index, U32(map, mapType) is uint type ? EnumName(types, type, "BPF_MAP_TYPE_") : "?",
                name >= 0 ? k.ReadCString(map + (ulong)name, 16) ?? "?" : "?", U32(map, keySize), U32(map, valueSize), U32(map, maxEntries),
                U32(map, flags), map, doubt));
        }
        return new RowsReport<LinuxBpfMap>("linux.ebpf.maps", rows, notes);
    }

    /// <summary>linux.ebpf.links.</summary>
    public static RowsReport<LinuxBpfLink> Links(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxBpfLink>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        int O(string s, string f) => t.OptionalOffset(s, f);
        int linkType = O("bpf_link", "type"), linkProg = O("bpf_link", "prog"), linkId = O("bpf_link", "id"), progType = O("bpf_prog", "type"),
            progAux = O("bpf_prog", "aux"), auxId = O("bpf_prog_aux", "id"), auxName = O("bpf_prog_aux", "name"),
            rawTp = O("bpf_raw_tp_link", "btp"), btpTp = O("bpf_raw_event_map", "tp"), tpName = O("tracepoint", "name");
        if (linkType < 0 || linkProg < 0 || Idr(context, "link_idr", notes) is not { } idr)
        {
            notes.Add($"link_idr (kallsyms; a kernel without CONFIG_BPF_SYSCALL?) or idr, xa_node, bpf_link.type/prog ({t.Source}) is not available");
            return new RowsReport<LinuxBpfLink>("linux.ebpf.links", rows, notes);
        }
        IReadOnlyDictionary<string, long> linkTypes = EnumValues(t, "bpf_link_type");
        IReadOnlyDictionary<string, long> progTypes = EnumValues(t, "bpf_prog_type");
        ulong Pointer(ulong at, int offset) => offset >= 0 && at != 0 && k.TryReadUInt64(at + (ulong)offset, out ulong p) ? p : 0;
        foreach ((int index, ulong link) in idr)
        {
            ct.ThrowIfCancellationRequested();
            var doubts = new List<string>();
            if (linkId >= 0 && k.TryReadUInt32(link + (ulong)linkId, out uint id) && id != index)
            {
                doubts.Add($"bpf_link.id {id} is not its IDR index {index}");
            }
            string type = k.TryReadUInt32(link + (ulong)linkType, out uint lt) ? EnumName(linkTypes, lt, "BPF_LINK_TYPE_") : "?";
            ulong prog = Pointer(link, linkProg), aux = Pointer(prog, progAux);
            int? programId = auxId >= 0 && aux != 0 && k.TryReadUInt32(aux + (ulong)auxId, out uint pid) ? (int)pid : null;
            string? programName = auxName >= 0 && aux != 0 ? k.ReadCString(aux + (ulong)auxName, 16) : null;
            string? programType = progType >= 0 && prog != 0 && k.TryReadUInt32(prog + (ulong)progType, out uint pt) ? EnumName(progTypes, pt, "BPF_PROG_TYPE_") : null;
            if (programId is null)
            {
                doubts.Add(prog == 0 ? "bpf_link.prog unreadable or null" : "the linked bpf_prog is unreadable");
            }
            // A raw tracepoint link (struct bpf_raw_tp_link embeds the bpf_link first) names its tracepoint through btp->tp->name.
            ulong tpNameAt = type == "RAW_TRACEPOINT" && btpTp >= 0 && tpName >= 0 ? Pointer(Pointer(Pointer(link, rawTp), btpTp), tpName) : 0;
            string? target = tpNameAt != 0 ? k.ReadCString(tpNameAt, 128) : null;
            rows.Add(new LinuxBpfLink(index, type, programId, programName, programType, target, link, doubts.Count == 0 ? null : string.Join("; ", doubts)));
        }
        return new RowsReport<LinuxBpfLink>("linux.ebpf.links", rows, notes);
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void RegisterObjects()
    {
        PluginRegistry.Register("linux.ebpf.maps", "eBPF maps (map_idr): id, type, name, key and value size, max entries, flags",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => Maps(c.Linux(ct), ct));
        PluginRegistry.Register("linux.ebpf.links", "eBPF links (link_idr): id, type, the attached program and, for raw tracepoints, the tracepoint",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => Links(c.Linux(ct), ct));
    }
}
