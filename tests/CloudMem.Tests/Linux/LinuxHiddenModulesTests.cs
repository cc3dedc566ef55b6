using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.hidden_modules: the module list against sysfs (module_kset) and a scan of the module area.</summary>
public sealed class LinuxHiddenModulesTests
{
    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("nokaslr-novmci", "memory.lime")]
    public void Clean_capture_has_every_truth_module_in_all_three_sources_and_none_hidden(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxModuleView> modules, List<string> notes) = LinuxHiddenModules.Compare(context);
        Assert.Empty(notes);
        Assert.DoesNotContain(modules, m => m.Hidden);
        using JsonDocument truth = Fixture.Truth(variant);
        var expected = truth.RootElement.GetProperty("modules").EnumerateArray().Select(m => m.GetProperty("name").GetString()!).Order().ToList();
        Assert.Equal(expected, modules.Select(m => m.Name).Order());
        Assert.All(modules, m =>
        {
            Assert.True(m.InModuleList && m.InSysfs && m.InMemoryScan, m.Finding);
            Assert.Null(m.Finding);
            Assert.Equal("Live", m.State);
        });
    }

    [SkippableFact]
    public void A_module_unlinked_from_the_module_list_is_reported_hidden()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(memory);
        LinuxModule victim = LinuxSockets.Modules(clean).Modules.Single(m => m.Name == "dummy");
        AddressSpace kernel = clean.Kernel.Kernel;
        Assert.True(clean.Types.TryGetOffset("module", "list", out int listOffset));
        ulong entry = victim.Offset + (ulong)listOffset;
        Assert.True(kernel.TryReadUInt64(entry, out ulong next));
        Assert.True(kernel.TryReadUInt64(entry + 8, out ulong prev));
        var overlay = new OverlayMemory(memory);
        overlay.PatchUInt64(LinuxPsScanTests.Physical(kernel, prev), next);     // prev->next = next
        overlay.PatchUInt64(LinuxPsScanTests.Physical(kernel, next + 8), prev); // next->prev = prev

        LinuxContext hiddenContext = LinuxContext.Open(overlay);
        Assert.DoesNotContain(LinuxSockets.Modules(hiddenContext).Modules, m => m.Name == "dummy");
        (List<LinuxModuleView> modules, List<string> notes) = LinuxHiddenModules.Compare(hiddenContext);
        Assert.Empty(notes);
        LinuxModuleView hidden = Assert.Single(modules, m => m.Hidden);
        Assert.Equal("dummy", hidden.Name);
        Assert.Equal(victim.Offset, hidden.Offset);
        Assert.False(hidden.InModuleList);
        Assert.True(hidden.InSysfs);
        Assert.True(hidden.InMemoryScan);
        Assert.Equal("not on the module list", hidden.Finding);
        Assert.Equal(3, modules.Count);
    }

    [SkippableFact]
    public void A_module_unlinked_from_both_the_module_list_and_sysfs_is_still_found_by_the_scan()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(memory);
        ulong module = LinuxSockets.Modules(clean).Modules.Single(m => m.Name == "loop").Offset;
        AddressSpace kernel = clean.Kernel.Kernel;
        Assert.True(clean.Types.TryGetOffset("module", "list", out int listOffset));
        Assert.True(clean.Types.TryGetOffset("module", "mkobj", out int mkobj));
        Assert.True(clean.Types.TryGetOffset("module_kobject", "kobj", out int kobj));
        Assert.True(clean.Types.TryGetOffset("kobject", "entry", out int kobjEntry));
        var overlay = new OverlayMemory(memory);
        foreach (ulong entry in new[] { module + (ulong)listOffset, module + (ulong)(mkobj + kobj + kobjEntry) })
        {
            Assert.True(kernel.TryReadUInt64(entry, out ulong next));
            Assert.True(kernel.TryReadUInt64(entry + 8, out ulong prev));
            overlay.PatchUInt64(LinuxPsScanTests.Physical(kernel, prev), next);
            overlay.PatchUInt64(LinuxPsScanTests.Physical(kernel, next + 8), prev);
        }
        (List<LinuxModuleView> modules, List<string> notes) = LinuxHiddenModules.Compare(LinuxContext.Open(overlay));
        Assert.Empty(notes);
        LinuxModuleView hidden = Assert.Single(modules, m => m.Hidden);
        Assert.Equal(("loop", false, false, true), (hidden.Name, hidden.InModuleList, hidden.InSysfs, hidden.InMemoryScan));
        Assert.Equal("not on the module list; not in sysfs (module_kset)", hidden.Finding);
    }

    [SkippableTheory]
    [InlineData("qemu_fw_cfg", true)]
    [InlineData("nf-conntrack", true)]
    [InlineData("", false)]
    [InlineData("bad name", false)]
    public void Module_name_shape(string name, bool valid)
    {
        byte[] bytes = new byte[56];
        System.Text.Encoding.ASCII.GetBytes(name).CopyTo(bytes, 0);
        Assert.Equal(valid, LinuxHiddenModules.IsName(bytes));
    }
}
