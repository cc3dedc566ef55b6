using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>
/// linux.check_syscall, linux.check_modules, linux.netfilter and linux.kprobes: on the rootkit fixture against what the module itself logged in the
/// guest (truth.json.rootkit); on the clean captures no finding at all.
/// </summary>
public sealed class LinuxKernelIntegrityTests
{
    private static ulong Hex(JsonElement e) => Convert.ToUInt64(e.GetString(), 16);

    [SkippableFact]
    public void Check_syscall_flags_exactly_the_two_hooked_slots_with_their_original_handlers_and_the_hidden_module()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxCheckSyscall.Run(context);
        Assert.Empty(report.Notes);
        ulong table = Hex(rk.GetProperty("sys_call_table"));
        Assert.All(report.Rows, r => Assert.Equal(table, r.TableAddress));
        Assert.InRange(report.Rows.Count, 400, 1024);
        Assert.Equal(Enumerable.Range(0, report.Rows.Count), report.Rows.Select(r => r.Index));

        var hooked = report.Rows.Where(r => r.Hooked).OrderBy(r => r.Index).ToList();
        var expected = rk.GetProperty("hooked_syscalls").EnumerateArray().OrderBy(h => h.GetProperty("nr").GetInt32()).ToList();
        Assert.Equal(2, expected.Count);
        Assert.Equal(expected.Select(h => h.GetProperty("nr").GetInt32()), hooked.Select(r => r.Index));
        var listed = LinuxSockets.Modules(context).Modules;
        ulong rkBase = Hex(rk.GetProperty("module").GetProperty("base"));
        ulong rkSize = rk.GetProperty("module").GetProperty("size").GetUInt64();
        foreach ((LinuxSyscallSlot row, JsonElement want) in hooked.Zip(expected))
        {
            Assert.Equal(want.GetProperty("name").GetString(), row.Name);
            Assert.Equal(Hex(want.GetProperty("hook")), row.Handler);
            Assert.Equal(want.GetProperty("original_symbol").GetString(), row.Original);
            Assert.Equal(Hex(want.GetProperty("original")), row.OriginalAddress);
            Assert.Null(row.Symbol);
            // In no listed module, but inside the hidden module's core.
            Assert.DoesNotContain(listed, m => m.Base is ulong b && m.Size is ulong s && row.Handler >= b && row.Handler < b + s);
            Assert.Equal(KernelOwner.HiddenModule, row.Owner);
            Assert.Equal("cloudmem_rk", row.Module);
            Assert.InRange(row.Handler, rkBase, rkBase + rkSize - 1);
            Assert.Contains("not on the module list", row.Finding, StringComparison.Ordinal);
        }
        // Every other slot holds the kernel's own handler for that call.
        Assert.All(report.Rows.Where(r => !r.Hooked), r =>
        {
            Assert.Equal(KernelOwner.KernelText, r.Owner);
            Assert.StartsWith("__x64_sys_", r.Symbol, StringComparison.Ordinal);
            Assert.Null(r.Finding);
        });
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("basic", "memory.kdump-zstd")]
    [InlineData("nokaslr-novmci", "memory.lime")]
    [InlineData("pti", "memory.elf")]
    public void Clean_captures_have_no_syscall_or_module_finding(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        var syscalls = LinuxCheckSyscall.Run(context);
        Assert.Empty(syscalls.Notes);
        Assert.InRange(syscalls.Rows.Count, 400, 1024);
        Assert.DoesNotContain(syscalls.Rows, r => r.Hooked);
        Assert.Contains(syscalls.Rows, r => r.Index == 62 && r.Name == "kill" && r.Symbol == "__x64_sys_kill");
        var modules = LinuxCheckSyscall.CheckModules(context);
        Assert.Empty(modules.Notes);
        Assert.Empty(modules.Rows);
        var netfilter = LinuxKernelHooks.Netfilter(context);
        Assert.Empty(netfilter.Notes);
        Assert.All(netfilter.Rows, r => Assert.Null(r.Finding));
        var kprobes = LinuxKernelHooks.Kprobes(context);
        Assert.Empty(kprobes.Notes);
        Assert.All(kprobes.Rows, r => Assert.Null(r.Finding));
    }

    [SkippableFact]
    public void Check_modules_finds_the_hidden_rootkit_module_with_its_base_and_size()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.lime", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement module = truth.RootElement.GetProperty("rootkit").GetProperty("module");
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxCheckSyscall.CheckModules(context);
        Assert.Empty(report.Notes);
        LinuxModuleView hidden = Assert.Single(report.Rows);
        Assert.Equal(module.GetProperty("name").GetString(), hidden.Name);
        Assert.Equal(Hex(module.GetProperty("base")), hidden.Base);
        Assert.Equal(module.GetProperty("size").GetUInt64(), hidden.Size);
        Assert.True(hidden.Hidden);
        Assert.False(hidden.InModuleList);
        Assert.False(hidden.InSysfs);
        Assert.True(hidden.InMemoryScan);
        Assert.Equal("Live", hidden.State);
        // The listed modules keep their /proc/modules base and size in linux.hidden_modules.
        (List<LinuxModuleView> all, _) = LinuxHiddenModules.Compare(context);
        foreach (JsonElement m in truth.RootElement.GetProperty("modules").EnumerateArray())
        {
            LinuxModuleView row = Assert.Single(all, r => r.Name == m.GetProperty("name").GetString());
            Assert.Equal(Hex(m.GetProperty("base")), row.Base);
            Assert.Equal(m.GetProperty("size").GetUInt64(), row.Size);
        }
    }

    [SkippableFact]
    public void Netfilter_and_kprobes_show_the_rootkit_handlers_in_its_hidden_module()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        LinuxContext context = LinuxContext.Open(memory);
        var netfilter = LinuxKernelHooks.Netfilter(context);
        Assert.Empty(netfilter.Notes);
        JsonElement nf = rk.GetProperty("netfilter");
        LinuxNetfilterHook hook = Assert.Single(netfilter.Rows, r => r.Finding is not null);
        Assert.Equal(("ipv4", "PRE_ROUTING"), (hook.Family, hook.HookPoint));
        Assert.Equal(nf.GetProperty("priority").GetInt32(), hook.Priority);
        Assert.Equal(Hex(nf.GetProperty("hook")), hook.Handler);
        Assert.Equal(Hex(nf.GetProperty("ops")), hook.Ops);
        Assert.Equal((KernelOwner.HiddenModule, "cloudmem_rk"), (hook.Owner, hook.Module));
        Assert.Equal(0, hook.Position); // NF_IP_PRI_FIRST runs first
        Assert.All(netfilter.Rows.Where(r => r != hook), r => Assert.Equal(KernelOwner.KernelText, r.Owner));

        var kprobes = LinuxKernelHooks.Kprobes(context);
        Assert.Empty(kprobes.Notes);
        JsonElement kp = rk.GetProperty("kprobe");
        LinuxKprobe probe = Assert.Single(kprobes.Rows);
        Assert.Equal(Hex(kp.GetProperty("kprobe")), probe.Kprobe);
        Assert.Equal(Hex(kp.GetProperty("addr")), probe.Address);
        Assert.Equal(kp.GetProperty("symbol").GetString(), probe.SymbolName);
        Assert.Equal(kp.GetProperty("symbol").GetString(), probe.Target);
        Assert.Equal(Hex(kp.GetProperty("pre_handler")), probe.PreHandler);
        Assert.Null(probe.PreHandlerSymbol);
        Assert.Equal((KernelOwner.HiddenModule, "cloudmem_rk"), (probe.Owner, probe.Module));
        Assert.NotNull(probe.Finding);
    }

    [SkippableFact]
    public void Psscan_marks_the_task_the_rootkit_unlinked_as_hidden_and_nothing_else()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement hiddenTruth = truth.RootElement.GetProperty("rootkit").GetProperty("hidden_process");
        LinuxContext context = LinuxContext.Open(memory);
        Assert.DoesNotContain(LinuxProcesses.List(context).Processes, p => p.Pid == hiddenTruth.GetProperty("pid").GetInt32());
        LinuxScannedTask hidden = Assert.Single(LinuxPsScan.Scan(context).Tasks, t => t.State == "hidden");
        Assert.Equal(hiddenTruth.GetProperty("pid").GetInt32(), hidden.Pid);
        Assert.Equal(hiddenTruth.GetProperty("comm").GetString(), hidden.Comm);
        Assert.Equal(Hex(hiddenTruth.GetProperty("task")), hidden.Offset);
        Assert.False(hidden.OnTaskList);
        Assert.True(hidden.InPidTable);
        Assert.Null(hidden.ExitState);
    }

    [SkippableTheory]
    [InlineData("basic")]
    [InlineData("pti")]
    public void Psscan_finds_no_hidden_task_on_a_clean_capture(string variant)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", variant));
        var tasks = LinuxPsScan.Scan(LinuxContext.Open(memory)).Tasks;
        Assert.DoesNotContain(tasks, t => t.State == "hidden");
        Assert.All(tasks.Where(t => t.OnTaskList && t.Pid != 0), t => Assert.True(t.InPidTable, $"pid {t.Pid}"));
    }
}
