using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.check_idt, linux.tty_check and linux.keyboard_notifiers: clean on every capture except for the rootkit variant's
/// IDT gate, ttyS0 receive handlers and keyboard notifier, which are found with the addresses the module logged in the guest.</summary>
public sealed class LinuxKernelTablesTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "nokaslr-novmci", "memory.lime" },
        { "pti", "memory.elf" },
        { "rootkit", "memory.raw" },
    };

    private static ulong Hex(JsonElement e) => Convert.ToUInt64(e.GetString(), 16);

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void The_idt_and_the_terminals_line_disciplines_point_into_kernel_text(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        bool rootkit = variant == "rootkit";
        var idt = LinuxKernelTables.CheckIdt(context);
        Assert.Empty(idt.Notes);
        Assert.InRange(idt.Rows.Count, 32, 256);
        Assert.All(idt.Rows.Where(r => !(rootkit && r.Vector == 0xEE)), r => Assert.Null(r.Finding));
        Assert.All(idt.Rows, r => Assert.Equal((ushort)0x10, r.Segment));
        Assert.Equal("asm_exc_page_fault", idt.Rows.Single(r => r.Vector == 14).Symbol);
        Assert.Equal(KernelOwner.KernelText, idt.Rows.Single(r => r.Vector == 14).Owner);
        Assert.Equal(3, idt.Rows.Single(r => r.Vector == 3).Dpl);   // int3 may be raised from user mode
        Assert.Equal(3, idt.Rows.Single(r => r.Vector == 0x80).Dpl);
        Assert.Equal(0, idt.Rows.Single(r => r.Vector == 14).Dpl);

        var tty = LinuxKernelTables.TtyCheck(context);
        Assert.Empty(tty.Notes);
        Assert.NotEmpty(tty.Rows);
        var clean = tty.Rows.Where(r => !(rootkit && r.Tty == "ttyS0")).ToList();
        Assert.All(clean, r => Assert.Equal((KernelOwner.KernelText, (string?)null, "n_tty"), (r.Owner, r.Finding, r.LineDiscipline!)));
        Assert.All(clean, r => Assert.Equal("n_tty_" + r.Function, r.Symbol));
        Assert.Contains(tty.Rows, r => r.Tty == "ttyS0");

        var keyboard = LinuxKernelTables.KeyboardNotifiers(context);
        Assert.Empty(keyboard.Notes);
        Assert.All(keyboard.Rows.Where(r => r.Finding is null), r => Assert.Equal(KernelOwner.KernelText, r.Owner));
        Assert.Equal(variant == "rootkit" ? 1 : 0, keyboard.Rows.Count(r => r.Finding is not null));
    }

    [SkippableFact]
    public void The_rootkits_keyboard_notifier_is_found_in_its_hidden_module()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        JsonElement want = rk.GetProperty("keyboard_notifier");
        var report = LinuxKernelTables.KeyboardNotifiers(LinuxContext.Open(memory));
        LinuxKeyboardNotifier row = Assert.Single(report.Rows, r => r.Finding is not null);
        Assert.Equal(Hex(want.GetProperty("nb")), row.Block);
        Assert.Equal(Hex(want.GetProperty("notifier_call")), row.Handler);
        Assert.Equal(KernelOwner.HiddenModule, row.Owner);
        Assert.Equal(rk.GetProperty("module").GetProperty("name").GetString(), row.Module);
        Assert.Null(row.Symbol);
    }

    [SkippableFact]
    public void The_rootkits_idt_gate_and_tty_receive_hooks_are_the_only_findings_and_lie_in_its_hidden_module()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        string module = rk.GetProperty("module").GetProperty("name").GetString()!;
        LinuxContext context = LinuxContext.Open(memory);

        JsonElement gate = rk.GetProperty("hooked_idt");
        LinuxIdtEntry idt = Assert.Single(LinuxKernelTables.CheckIdt(context).Rows, r => r.Finding is not null);
        Assert.Equal((gate.GetProperty("vector").GetInt32(), Hex(gate.GetProperty("hook")), KernelOwner.HiddenModule, module),
            (idt.Vector, idt.Handler, idt.Owner, idt.Module));
        Assert.Contains("not on the module list", idt.Finding, StringComparison.Ordinal);
        // the gate the module replaced held a spurious-interrupt stub (vector 0xee is only used on Hyper-V)
        Assert.InRange(Hex(gate.GetProperty("original")), context.Kernel.Symbols.TryGetAddress("spurious_entries_start", out ulong s) ? s : 1, s + 0x100);

        var hooks = rk.GetProperty("hooked_tty").EnumerateArray()
            .Select(h => (h.GetProperty("tty").GetString()!, h.GetProperty("function").GetString()!, Hex(h.GetProperty("hook")), Hex(h.GetProperty("tty_struct"))))
            .OrderBy(h => h.Item2).ToList();
        Assert.Equal(2, hooks.Count);
        var found = LinuxKernelTables.TtyCheck(context).Rows.Where(r => r.Finding is not null).OrderBy(r => r.Function).ToList();
        Assert.Equal(hooks, found.Select(r => (r.Tty, r.Function, r.Handler, r.TtyStruct)));
        Assert.All(found, r => Assert.Equal((KernelOwner.HiddenModule, module, (string?)null), (r.Owner, r.Module, r.Symbol)));
        Assert.Equal(["n_tty_receive_buf", "n_tty_receive_buf2"], rk.GetProperty("hooked_tty").EnumerateArray()
            .Select(h => h.GetProperty("original_symbol").GetString()).Order());
    }
}
