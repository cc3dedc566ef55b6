using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>A registered netfilter hook (linux.netfilter).</summary>
/// <param name="Net">The struct net (network namespace) it is registered in.</param>
/// <param name="Family">ipv4, ipv6, arp, bridge.</param>
/// <param name="HookPoint">PRE_ROUTING, LOCAL_IN, FORWARD, LOCAL_OUT, POST_ROUTING (arp: IN, OUT, FORWARD).</param>
/// <param name="Position">Its place in the chain (0 runs first).</param>
/// <param name="Priority">nf_hook_ops.priority, null when the ops are unreadable.</param>
/// <param name="Handler">The hook function.</param>
/// <param name="Symbol">The kernel symbol at the handler, null outside the kernel image.</param>
/// <param name="Owner">Who owns the handler.</param>
/// <param name="Module">The module whose core holds it, or null.</param>
/// <param name="Ops">The struct nf_hook_ops it was registered with.</param>
/// <param name="Finding">Why it is suspicious (code in no listed module), or null.</param>
public sealed record LinuxNetfilterHook([property: Hex] ulong Net, string Family, string HookPoint, int Position, int? Priority, [property: Hex] ulong Handler,
    string? Symbol, KernelOwner Owner, string? Module, [property: Hex] ulong Ops, string? Finding);

/// <summary>A registered kprobe (linux.kprobes).</summary>
/// <param name="Kprobe">The struct kprobe.</param>
/// <param name="Address">The probed address.</param>
/// <param name="Target">The kernel symbol at the probed address.</param>
/// <param name="SymbolName">kprobe.symbol_name as registered, null when not set.</param>
/// <param name="PreHandler">kprobe.pre_handler (0 when none).</param>
/// <param name="PreHandlerSymbol">Its kernel symbol, null outside the kernel image.</param>
/// <param name="PostHandler">kprobe.post_handler (0 when none).</param>
/// <param name="Owner">Who owns the handler (the pre-handler, else the post-handler).</param>
/// <param name="Module">The module whose core holds it, or null.</param>
/// <param name="Flags">kprobe.flags (1 gone, 2 disabled, 4 optimized, 8 ftrace).</param>
/// <param name="Finding">Why it is suspicious (handler in no listed module), or null.</param>
public sealed record LinuxKprobe([property: Hex] ulong Kprobe, [property: Hex] ulong Address, string? Target, string? SymbolName, [property: Hex] ulong PreHandler,
    string? PreHandlerSymbol, [property: Hex] ulong PostHandler, KernelOwner Owner, string? Module, [property: Hex] uint Flags, string? Finding);

/// <summary>
/// Kernel hooks a rootkit registers through official interfaces: netfilter hooks (per network namespace, family and hook
/// point, from struct net.nf.hooks_*) and kprobes (kprobe_table, including the probes under an aggregate probe). Each
/// handler is resolved to its symbol or module; handlers in a hidden module or in no module are findings.
/// </summary>
public static class LinuxKernelHooks
{
    private static readonly string[] s_inetHooks = ["PRE_ROUTING", "LOCAL_IN", "FORWARD", "LOCAL_OUT", "POST_ROUTING"];
    private static readonly string[] s_arpHooks = ["IN", "OUT", "FORWARD"];
    private const int MaxHooksPerChain = 1024;
    private const int MaxNamespaces = 65_536;

    /// <summary>linux.netfilter.</summary>
    public static RowsReport<LinuxNetfilterHook> Netfilter(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxNetfilterHook>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("net_namespace_list", out ulong head) || !t.TryGetOffset("net", "list", out int netList)
            || !t.TryGetOffset("nf_hook_entries", "hooks", out int entriesHooks) || !t.TryGetOffset("nf_hook_entry", "hook", out int entryHook)
            || !t.TryGetSize("nf_hook_entry", out int entrySize) || !t.TryGetOffset("nf_hook_ops", "priority", out int opsPriority))
        {
            notes.Add("net_namespace_list, struct net.list or the nf_hook_entries/nf_hook_entry/nf_hook_ops types are not available");
            return new RowsReport<LinuxNetfilterHook>("linux.netfilter", rows, notes);
        }
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        var chains = new List<(string Family, string[] Points, int Offset)>();
        foreach ((string family, string field, string[] points) in new[] { ("ipv4", "hooks_ipv4", s_inetHooks), ("ipv6", "hooks_ipv6", s_inetHooks),
            ("arp", "hooks_arp", s_arpHooks), ("bridge", "hooks_bridge", s_inetHooks) })
        {
            if (t.FindField("net", "nf." + field) is FieldInfo f)
            {
                int length = Math.Min(f.Type.Resolve().ArrayLength, points.Length);
                chains.Add((family, points[..length], f.Offset));
            }
        }
        ListWalk nets = KernelLists.Circular(k, head, "network namespaces", MaxNamespaces, KernelLists.IsKernelAddress, cancellationToken: ct);
        if (nets.Note is not null)
        {
            notes.Add(nets.Note);
        }
        foreach (ulong link in nets.Entries)
        {
            ulong net = link - (ulong)netList;
            foreach ((string family, string[] points, int offset) in chains)
            {
                for (int point = 0; point < points.Length; point++)
                {
                    ct.ThrowIfCancellationRequested();
                    if (!k.TryReadUInt64(net + (ulong)offset + ((ulong)point * 8), out ulong entries) || entries == 0)
                    {
                        continue;
                    }
                    // num_hook_entries is a u16 followed by padding up to the pointer-aligned hooks[].
                    if (!k.TryReadUInt32(entries, out uint word) || (word & 0xFFFF) is var count && count > MaxHooksPerChain)
                    {
                        notes.Add($"net 0x{net:X} {family} {points[point]}: nf_hook_entries at 0x{entries:X} unreadable or with an implausible count");
                        continue;
                    }
                    // struct nf_hook_entries { u16 num_hook_entries; struct nf_hook_entry hooks[]; } then struct nf_hook_ops *orig_ops[num].
                    ulong hooks = entries + (ulong)entriesHooks;
                    ulong origOps = hooks + ((ulong)count * (ulong)entrySize);
                    for (int i = 0; i < (int)count; i++)
                    {
                        if (!k.TryReadUInt64(hooks + ((ulong)i * (ulong)entrySize) + (ulong)entryHook, out ulong handler))
                        {
                            notes.Add($"net 0x{net:X} {family} {points[point]}: hook {i} unreadable");
                            continue;
                        }
                        ulong ops = k.TryReadUInt64(origOps + ((ulong)i * 8), out ulong o) ? o : 0;
                        int? priority = ops != 0 && k.TryReadUInt32(ops + (ulong)opsPriority, out uint p) ? unchecked((int)p) : null;
                        (KernelOwner owner, LinuxModuleView? module) = map.OwnerOf(handler);
                        rows.Add(new LinuxNetfilterHook(net, family, points[point], i, priority, handler, map.SymbolAt(handler), owner, module?.Name, ops,
                            Finding(owner, module)));
                    }
                }
            }
        }
        return new RowsReport<LinuxNetfilterHook>("linux.netfilter", rows, notes);
    }

    /// <summary>linux.kprobes.</summary>
    public static RowsReport<LinuxKprobe> Kprobes(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxKprobe>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("kprobe_table", out ulong table) || t.FindField("kprobe", "hlist") is null
            || !t.TryGetOffset("kprobe", "hlist", out int hlist) || !t.TryGetOffset("kprobe", "addr", out int addr)
            || !t.TryGetOffset("kprobe", "pre_handler", out int pre) || !t.TryGetOffset("kprobe", "post_handler", out int post)
            || !t.TryGetOffset("kprobe", "flags", out int flags) || !t.TryGetOffset("kprobe", "list", out int list)
            || !t.TryGetOffset("kprobe", "symbol_name", out int symbolName))
        {
            notes.Add("kprobe_table or struct kprobe (hlist, addr, pre_handler, post_handler, flags, list, symbol_name) is not available");
            return new RowsReport<LinuxKprobe>("linux.kprobes", rows, notes);
        }
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        ulong aggregate = map.SymbolAddress("aggr_pre_handler") ?? 0;
        const int buckets = 64; // KPROBE_TABLE_SIZE
        int limit = AnalysisLimits.Default.MaxListEntries;
        void Add(ulong kp)
        {
            k.TryReadUInt64(kp + (ulong)addr, out ulong address);
            k.TryReadUInt64(kp + (ulong)pre, out ulong preHandler);
            k.TryReadUInt64(kp + (ulong)post, out ulong postHandler);
            k.TryReadUInt32(kp + (ulong)flags, out uint flagBits);
            string? name = k.TryReadUInt64(kp + (ulong)symbolName, out ulong namePointer) && namePointer != 0 ? k.ReadCString(namePointer, 256) : null;
            ulong handler = preHandler != 0 ? preHandler : postHandler;
            (KernelOwner owner, LinuxModuleView? module) = handler == 0 ? (KernelOwner.KernelText, null) : map.OwnerOf(handler);
            rows.Add(new LinuxKprobe(kp, address, map.SymbolAt(address), name, preHandler, preHandler == 0 ? null : map.SymbolAt(preHandler), postHandler,
                owner, module?.Name, flagBits, Finding(owner, module)));
        }
        for (int bucket = 0; bucket < buckets; bucket++)
        {
            if (!k.TryReadUInt64(table + ((ulong)bucket * 8), out ulong first))
            {
                notes.Add($"kprobe_table[{bucket}] is unreadable");
                continue;
            }
            ListWalk walk = KernelLists.Linear(k, first, $"kprobe_table[{bucket}]", limit, KernelLists.IsKernelAddress, cancellationToken: ct);
            if (walk.Note is not null)
            {
                notes.Add(walk.Note);
            }
            foreach (ulong node in walk.Entries)
            {
                ulong kp = node - (ulong)hlist;
                // An aggregate probe stands for several probes on one address: list them instead of it.
                if (aggregate != 0 && k.TryReadUInt64(kp + (ulong)pre, out ulong h) && h == aggregate)
                {
                    ListWalk children = KernelLists.Circular(k, kp + (ulong)list, "aggregated kprobes", limit, KernelLists.IsKernelAddress, cancellationToken: ct);
                    if (children.Note is not null)
                    {
                        notes.Add(children.Note);
                    }
                    foreach (ulong child in children.Entries)
                    {
                        Add(child - (ulong)list);
                    }
                    continue;
                }
                Add(kp);
            }
        }
        return new RowsReport<LinuxKprobe>("linux.kprobes", rows, notes);
    }

    internal static string? Finding(KernelOwner owner, LinuxModuleView? module) => owner switch
    {
        KernelOwner.NoModule => "handler in no module (code of a hidden module?)",
        KernelOwner.HiddenModule => $"handler in module {module!.Name}, which is not on the module list",
        KernelOwner.KernelImage => "handler in the kernel image outside its text",
        _ => null,
    };

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register(new PluginInfo("linux.netfilter",
            "Netfilter hooks per network namespace, family and hook point, with priority and the module that owns each handler",
            TargetOs.Linux), (c, a, ct) => Netfilter(c.Linux(ct), ct));
        PluginRegistry.Register(new PluginInfo("linux.kprobes",
            "Registered kprobes: probed address and symbol, pre/post handlers and the module that owns them",
            TargetOs.Linux), (c, a, ct) => Kprobes(c.Linux(ct), ct));
    }
}
