using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>One present gate of the interrupt descriptor table (linux.check_idt).</summary>
/// <param name="Vector">The vector (0-255).</param>
/// <param name="Handler">The gate's handler address.</param>
/// <param name="Symbol">The kernel symbol at the handler ("asm_exc_page_fault"), null outside the kernel image.</param>
/// <param name="Owner">Who owns the handler's address.</param>
/// <param name="Module">The module whose core holds it, or null.</param>
/// <param name="Segment">The code segment selector (0x10, __KERNEL_CS).</param>
/// <param name="GateType">14 interrupt gate, 15 trap gate.</param>
/// <param name="Dpl">The privilege level allowed to raise it with INT (3 for int3, int 0x80, into).</param>
/// <param name="Ist">The interrupt stack table slot (0 none).</param>
/// <param name="Finding">Why the gate is suspicious (handler outside kernel text), or null. The reserved exception vectors that
/// still hold their boot-time stub (early_idt_handler_array, in the freed init text) are expected and not flagged.</param>
public sealed record LinuxIdtEntry(int Vector, [property: Hex] ulong Handler, string? Symbol, KernelOwner Owner, string? Module, [property: Hex] ushort Segment,
    int GateType, int Dpl, int Ist, string? Finding);

/// <summary>A handler of an open terminal (linux.tty_check): its line discipline's receive functions.</summary>
/// <param name="Driver">The tty driver's name (tty_driver.name: "ttyS", "tty", "pts").</param>
/// <param name="Tty">The terminal's name (tty_struct.name: "ttyS0").</param>
/// <param name="LineDiscipline">The line discipline's name (n_tty).</param>
/// <param name="Function">Which operation: receive_buf or receive_buf2.</param>
/// <param name="Handler">The function's address.</param>
/// <param name="Symbol">Its kernel symbol, null outside the kernel image.</param>
/// <param name="Owner">Who owns the address.</param>
/// <param name="Module">The module whose core holds it, or null.</param>
/// <param name="TtyStruct">The struct tty_struct.</param>
/// <param name="Finding">Why it is suspicious (handler in no listed module or in a hidden one: a keystroke logger), or null.</param>
public sealed record LinuxTtyHandler(string Driver, string Tty, string? LineDiscipline, string Function, [property: Hex] ulong Handler, string? Symbol,
    KernelOwner Owner, string? Module, [property: Hex] ulong TtyStruct, string? Finding);

/// <summary>A callback on the keyboard notifier chain (linux.keyboard_notifiers): called with every key press.</summary>
/// <param name="Block">The struct notifier_block.</param>
/// <param name="Handler">notifier_block.notifier_call.</param>
/// <param name="Priority">notifier_block.priority, null when unreadable.</param>
/// <param name="Symbol">The handler's kernel symbol, null outside the kernel image.</param>
/// <param name="Owner">Who owns the handler.</param>
/// <param name="Module">The module whose core holds it, or null.</param>
/// <param name="Finding">Why it is suspicious (no module or a hidden one: the mark of a keylogger), or null.</param>
public sealed record LinuxKeyboardNotifier([property: Hex] ulong Block, [property: Hex] ulong Handler, int? Priority, string? Symbol, KernelOwner Owner, string? Module,
    string? Finding);

/// <summary>
/// Kernel tables rootkits and keyloggers patch or join: the IDT (idt_table), the line disciplines of open terminals
/// (tty_drivers -> ttys -> ldisc -> ops) and the keyboard notifier chain (keyboard_notifier_list). Every handler is resolved
/// to its symbol or the module that holds it (<see cref="KernelAddressMap"/>); anything outside kernel text and listed
/// modules is a finding.
/// </summary>
public static class LinuxKernelTables
{
    private const int IdtEntries = 256;
    private const int GateSize = 16;
    private const int EarlyHandlerSize = 9; // EARLY_IDT_HANDLER_SIZE
    private const int MaxTtyDrivers = 4096;
    private const int MaxTtysPerDriver = 1 << 16;
    private const int MaxNotifiers = 4096;

    /// <summary>linux.check_idt: every present gate of idt_table.</summary>
    public static RowsReport<LinuxIdtEntry> CheckIdt(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxIdtEntry>();
        if (!context.Kernel.Symbols.TryGetAddress("idt_table", out ulong table))
        {
            notes.Add("idt_table is not in kallsyms (a kernel without CONFIG_KALLSYMS_ALL?): the IDT is not checked");
            return new RowsReport<LinuxIdtEntry>("linux.check_idt", rows, notes);
        }
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        ulong earlyHandlers = map.SymbolAddress("early_idt_handler_array") ?? 0;
        byte[] raw = new byte[IdtEntries * GateSize];
        int got = context.Kernel.Kernel.Read(table, raw);
        if (got < raw.Length)
        {
            notes.Add($"idt_table at 0x{table:X}: only {got / GateSize} of {IdtEntries} gates readable");
        }
        for (int vector = 0; vector < got / GateSize; vector++)
        {
            // struct gate_struct: offset_low u16, segment u16, bits u16 (ist 0-2, type 8-12, dpl 13-14, p 15), offset_middle u16, offset_high u32.
            ReadOnlySpan<byte> gate = raw.AsSpan(vector * GateSize, GateSize);
            ushort bits = BinaryPrimitives.ReadUInt16LittleEndian(gate[4..]);
            if ((bits & 0x8000) == 0)
            {
                continue;
            }
            ulong handler = BinaryPrimitives.ReadUInt16LittleEndian(gate) | ((ulong)BinaryPrimitives.ReadUInt16LittleEndian(gate[6..]) << 16)
                | ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(gate[8..]) << 32);
            (KernelOwner owner, LinuxModuleView? module) = map.OwnerOf(handler);
            string? symbol = map.SymbolAt(handler);
            string? finding = Finding(owner, module);
            // Reserved exception vectors keep the boot-time stub from early_idt_handler_array (9 bytes each, in init text).
            if (earlyHandlers != 0 && vector < 32 && handler == earlyHandlers + ((ulong)vector * EarlyHandlerSize))
            {
                symbol = vector == 0 ? "early_idt_handler_array" : $"early_idt_handler_array+0x{vector * EarlyHandlerSize:X}";
                finding = null;
            }
            rows.Add(new LinuxIdtEntry(vector, handler, symbol, owner, module?.Name, BinaryPrimitives.ReadUInt16LittleEndian(gate[2..]),
                (bits >> 8) & 0x1F, (bits >> 13) & 3, bits & 7, finding));
        }
        return new RowsReport<LinuxIdtEntry>("linux.check_idt", rows, notes);
    }

    /// <summary>linux.tty_check: receive_buf/receive_buf2 of the line discipline of every open terminal.</summary>
    public static RowsReport<LinuxTtyHandler> TtyCheck(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxTtyHandler>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        int O(string s, string f) => t.OptionalOffset(s, f);
        int driverList = O("tty_driver", "tty_drivers"), driverTtys = O("tty_driver", "ttys"), driverNum = O("tty_driver", "num"),
            driverName = O("tty_driver", "name"), ttyLdisc = O("tty_struct", "ldisc"), ttyName = O("tty_struct", "name"), ldiscOps = O("tty_ldisc", "ops"),
            opsName = O("tty_ldisc_ops", "name");
        if (!context.Kernel.Symbols.TryGetAddress("tty_drivers", out ulong head) || driverList < 0 || driverTtys < 0 || driverNum < 0 || ttyLdisc < 0
            || ldiscOps < 0)
        {
            notes.Add("tty_drivers (kallsyms) or tty_driver.tty_drivers/ttys/num, tty_struct.ldisc, tty_ldisc.ops are not available");
            return new RowsReport<LinuxTtyHandler>("linux.tty_check", rows, notes);
        }
        var functions = new[] { "receive_buf", "receive_buf2" }.Select(f => (Name: f, Offset: O("tty_ldisc_ops", f))).Where(f => f.Offset >= 0).ToArray();
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        foreach (ulong link in context.WalkList(head, "tty drivers (tty_drivers)", "tty drivers", MaxTtyDrivers, notes, ct))
        {
            ulong driver = link - (ulong)driverList;
            string name = driverName >= 0 && k.TryReadUInt64(driver + (ulong)driverName, out ulong np) && np != 0 ? k.ReadCString(np, 64) ?? "?" : "?";
            if (!k.TryReadUInt64(driver + (ulong)driverTtys, out ulong ttys) || ttys == 0 || !k.TryReadUInt32(driver + (ulong)driverNum, out uint num))
            {
                continue;
            }
            if (num > MaxTtysPerDriver)
            {
                notes.Add($"tty driver {name}: {num} terminals, more than {MaxTtysPerDriver}: only the first checked");
                num = MaxTtysPerDriver;
            }
            byte[] pointers = new byte[num * 8];
            int got = k.Read(ttys, pointers);
            for (int i = 0; i < got / 8; i++)
            {
                ct.ThrowIfCancellationRequested();
                ulong tty = BinaryPrimitives.ReadUInt64LittleEndian(pointers.AsSpan(i * 8));
                if (tty == 0 || !k.TryReadUInt64(tty + (ulong)ttyLdisc, out ulong ldisc) || ldisc == 0 || !k.TryReadUInt64(ldisc + (ulong)ldiscOps, out ulong ops) || ops == 0)
                {
                    continue;
                }
                string ttyText = ttyName >= 0 ? k.ReadCString(tty + (ulong)ttyName, 64) ?? "?" : "?";
                string? ldiscName = opsName >= 0 && k.TryReadUInt64(ops + (ulong)opsName, out ulong lp) && lp != 0 ? k.ReadCString(lp, 64) : null;
                foreach ((string function, int offset) in functions)
                {
                    if (!k.TryReadUInt64(ops + (ulong)offset, out ulong handler) || handler == 0)
                    {
                        continue;
                    }
                    (KernelOwner owner, LinuxModuleView? module) = map.OwnerOf(handler);
                    rows.Add(new LinuxTtyHandler(name, ttyText, ldiscName, function, handler, map.SymbolAt(handler), owner, module?.Name, tty, Finding(owner, module)));
                }
            }
        }
        return new RowsReport<LinuxTtyHandler>("linux.tty_check", rows, notes);
    }

    /// <summary>linux.keyboard_notifiers: the callbacks on keyboard_notifier_list.</summary>
    public static RowsReport<LinuxKeyboardNotifier> KeyboardNotifiers(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxKeyboardNotifier>();
        TypeModel t = context.Types;
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("keyboard_notifier_list", out ulong chain) || !t.TryGetOffset("atomic_notifier_head", "head", out int headOffset)
            || !t.TryGetOffset("notifier_block", "notifier_call", out int call) || !t.TryGetOffset("notifier_block", "next", out int next))
        {
            notes.Add("keyboard_notifier_list (kallsyms; a kernel without CONFIG_VT?) or atomic_notifier_head.head, notifier_block.notifier_call/next are not available");
            return new RowsReport<LinuxKeyboardNotifier>("linux.keyboard_notifiers", rows, notes);
        }
        int priority = t.TryGetOffset("notifier_block", "priority", out int p) ? p : -1;
        KernelAddressMap map = KernelAddressMap.Build(context, notes, ct);
        if (!k.TryReadUInt64(chain + (ulong)headOffset, out ulong first))
        {
            notes.Add($"keyboard_notifier_list at 0x{chain:X} is unreadable");
            return new RowsReport<LinuxKeyboardNotifier>("linux.keyboard_notifiers", rows, notes);
        }
        ListWalk walk = KernelLists.Linear(k, first, "keyboard notifiers", MaxNotifiers, KernelLists.IsKernelAddress, nextOffset: next, cancellationToken: ct);
        if (walk.Note is not null)
        {
            notes.Add($"keyboard_notifier_list: {walk.Note}");
        }
        foreach (ulong block in walk.Entries)
        {
            if (!k.TryReadUInt64(block + (ulong)call, out ulong handler))
            {
                notes.Add($"notifier_block at 0x{block:X} is unreadable");
                continue;
            }
            int? order = priority >= 0 && k.TryReadUInt32(block + (ulong)priority, out uint value) ? unchecked((int)value) : null;
            (KernelOwner owner, LinuxModuleView? module) = map.OwnerOf(handler);
            rows.Add(new LinuxKeyboardNotifier(block, handler, order, map.SymbolAt(handler), owner, module?.Name, Finding(owner, module)));
        }
        return new RowsReport<LinuxKeyboardNotifier>("linux.keyboard_notifiers", rows, notes);
    }

    private static string? Finding(KernelOwner owner, LinuxModuleView? module) => LinuxKernelHooks.Finding(owner, module);

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.check_idt", "Interrupt descriptor table gates resolved to symbol or module; handlers outside kernel text flagged",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => CheckIdt(c.Linux(ct), ct));
        PluginRegistry.Register("linux.tty_check", "Line-discipline receive handlers of every open terminal resolved to symbol or module; handlers outside kernel text flagged",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => TtyCheck(c.Linux(ct), ct));
        PluginRegistry.Register("linux.keyboard_notifiers", "Callbacks on the keyboard notifier chain (called with every key press) with the module that owns each",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => KeyboardNotifiers(c.Linux(ct), ct));
    }
}
