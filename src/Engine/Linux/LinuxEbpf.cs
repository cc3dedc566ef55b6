using System.Globalization;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>A loaded eBPF program (linux.ebpf), as bpftool prog shows it.</summary>
/// <param name="Id">bpf_prog_aux.id (the index in prog_idr).</param>
/// <param name="Type">The program type's kernel name without its prefix (SOCKET_FILTER, KPROBE, TRACING, XDP), or the number.</param>
/// <param name="Name">bpf_prog_aux.name (at most 15 characters; empty when the loader gave none).</param>
/// <param name="Tag">bpf_prog.tag: the SHA-1 prefix of the instructions, as 16 hex digits (bpftool's tag).</param>
/// <param name="Instructions">bpf_prog.len: instructions after verification.</param>
/// <param name="JitedSize">bpf_prog.jited_len in bytes (0 when interpreted).</param>
/// <param name="Function">bpf_prog.bpf_func: the JIT image (or the interpreter).</param>
/// <param name="AttachType">expected_attach_type's kernel name without its prefix, null when 0 and the type has none.</param>
/// <param name="AttachTo">aux.attach_func_name (the kernel function a tracing program attaches to), null when none.</param>
/// <param name="LoadedSeconds">aux.load_time in seconds after boot.</param>
/// <param name="Program">The struct bpf_prog.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxBpfProgram(int Id, string Type, string Name, string? Tag, uint? Instructions, uint? JitedSize, [property: Hex] ulong Function,
    string? AttachType, string? AttachTo, double? LoadedSeconds, [property: Hex] ulong Program, string? Doubt);

/// <summary>
/// linux.ebpf: the programs in the kernel's prog_idr (every loaded eBPF program, whatever holds it: a file descriptor, a pin, a
/// link), read from the IDR's xarray. Type and attach-type names come from the kernel's own BTF enums.
/// </summary>
public static partial class LinuxEbpf
{
    private const long MaxPrograms = 1 << 20;

    /// <summary>linux.ebpf.</summary>
    public static RowsReport<LinuxBpfProgram> Run(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxBpfProgram>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        int O(string s, string f) => t.OptionalOffset(s, f);
        int progType = O("bpf_prog", "type"), progAux = O("bpf_prog", "aux"), auxId = O("bpf_prog_aux", "id"),
            auxName = O("bpf_prog_aux", "name"), tag = O("bpf_prog", "tag"), len = O("bpf_prog", "len"), jitedLen = O("bpf_prog", "jited_len"),
            func = O("bpf_prog", "bpf_func"), attachType = O("bpf_prog", "expected_attach_type"), attachName = O("bpf_prog_aux", "attach_func_name"),
            loadTime = O("bpf_prog_aux", "load_time");
        if (progType < 0 || progAux < 0 || auxId < 0 || Idr(context, "prog_idr", notes) is not { } idr)
        {
            notes.Add($"prog_idr (kallsyms; a kernel without CONFIG_BPF_SYSCALL?) or idr, xa_node, bpf_prog.type/aux, bpf_prog_aux.id ({t.Source}) is not available");
            return new RowsReport<LinuxBpfProgram>("linux.ebpf", rows, notes);
        }
        IReadOnlyDictionary<string, long> types = EnumValues(t, "bpf_prog_type");
        IReadOnlyDictionary<string, long> attachTypes = EnumValues(t, "bpf_attach_type");
        foreach ((int index, ulong prog) in idr)
        {
            ct.ThrowIfCancellationRequested();
            var doubts = new List<string>();
            ulong aux = k.TryReadUInt64(prog + (ulong)progAux, out ulong a) ? a : 0;
            int id = aux != 0 && k.TryReadUInt32(aux + (ulong)auxId, out uint i) ? (int)i : index;
            if (id != index)
            {
                doubts.Add($"aux.id {id} is not its IDR index {index}");
            }
            uint typeValue = k.TryReadUInt32(prog + (ulong)progType, out uint tv) ? tv : uint.MaxValue;
            string name = auxName >= 0 && aux != 0 ? k.ReadCString(aux + (ulong)auxName, 16) ?? "?" : "?";
            string? tagText = tag >= 0 && LinuxSockets.ReadBytes(k, prog + (ulong)tag, 8) is { } bytes ? System.Convert.ToHexStringLower(bytes) : null;
            uint? instructions = len >= 0 && k.TryReadUInt32(prog + (ulong)len, out uint n) ? n : null;
            uint? jited = jitedLen >= 0 && k.TryReadUInt32(prog + (ulong)jitedLen, out uint j) ? j : null;
            ulong function = func >= 0 && k.TryReadUInt64(prog + (ulong)func, out ulong f) ? f : 0;
            uint attach = attachType >= 0 && k.TryReadUInt32(prog + (ulong)attachType, out uint at) ? at : 0;
            string? attachTo = attachName >= 0 && aux != 0 && k.TryReadUInt64(aux + (ulong)attachName, out ulong np) && np != 0 ? k.ReadCString(np, 128) : null;
            double? loaded = loadTime >= 0 && aux != 0 && k.TryReadUInt64(aux + (ulong)loadTime, out ulong ns) ? Math.Round(ns / 1e9, 3) : null;
            if (aux == 0)
            {
                doubts.Add("bpf_prog.aux unreadable");
            }
            rows.Add(new LinuxBpfProgram(id, EnumName(types, typeValue, "BPF_PROG_TYPE_"), name, tagText, instructions, jited, function,
                attach == 0 ? null : EnumName(attachTypes, attach, "BPF_"), attachTo, loaded, prog, doubts.Count == 0 ? null : string.Join("; ", doubts)));
        }
        return new RowsReport<LinuxBpfProgram>("linux.ebpf", rows, notes);
    }

    /// <summary>The entries of the kernel IDR <paramref name="symbol"/> (prog_idr, map_idr, link_idr) as (id, pointer), in id order;
    /// null when the symbol or the IDR layout is not available, empty (with a note) when its root does not read.</summary>
    private static List<(int Id, ulong Pointer)>? Idr(LinuxContext context, string symbol, List<string> notes)
    {
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        var xarray = new KernelXArray(t);
        if (!context.Kernel.Symbols.TryGetAddress(symbol, out ulong idr) || !t.TryGetOffset("idr", "idr_rt.xa_head", out int head) || !xarray.Available)
        {
            return null;
        }
        uint first = t.TryGetOffset("idr", "idr_base", out int idrBase) && k.TryReadUInt32(idr + (ulong)idrBase, out uint b) ? b : 0;
        if (!k.TryReadUInt64(idr + (ulong)head, out ulong root))
        {
            notes.Add($"{symbol} at 0x{idr:X} is unreadable");
            return [];
        }
        return xarray.Entries(k, root, MaxPrograms, notes, symbol).Select(e => ((int)(e.Key + first), e.Value.Entry)).ToList();
    }

    private static IReadOnlyDictionary<string, long> EnumValues(TypeModel t, string name)
        => t.FindType(name)?.Resolve().EnumValues ?? new Dictionary<string, long>();

    private static string EnumName(IReadOnlyDictionary<string, long> values, uint value, string prefix)
    {
        string? name = values.FirstOrDefault(v => v.Value == value && v.Key.StartsWith(prefix, StringComparison.Ordinal)).Key;
        return name is null ? value.ToString(CultureInfo.InvariantCulture) : name[prefix.Length..];
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.ebpf", "Loaded eBPF programs (prog_idr): id, type, name, tag, instructions, JIT image, attach type and target, load time",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => Run(c.Linux(ct), ct));
    }
}
