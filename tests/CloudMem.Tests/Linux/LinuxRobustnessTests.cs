using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>Damaged and stripped captures: partial, marked results and clear explanations, never a hang.</summary>
public sealed class LinuxRobustnessTests
{
    private static string? SharedIsf() => Fixture.KernelIsf();

    [SkippableFact]
    public void Cyclic_task_list_and_garbage_pointers_give_partial_marked_rows()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(capture);
        (List<LinuxProcess> all, _) = LinuxProcesses.List(clean);
        Assert.True(all.Count > 40);
        var overlay = new OverlayMemory(capture);
        LinuxProfile p = clean.Profile;
        AddressSpace k = clean.Kernel.Kernel;
        // Task #20's tasks.next points back at task #10 (a cycle); task #5's real_parent is garbage.
        ulong Pa(ulong va) => k.TryTranslate(va, out Translation t, out _) ? t.PhysicalAddress : throw new InvalidOperationException();
        overlay.PatchUInt64(Pa(all[20].Offset + (ulong)p.TaskTasks), all[10].Offset + (ulong)p.TaskTasks);
        overlay.PatchUInt64(Pa(all[5].Offset + (ulong)p.TaskRealParent), 0xDEAD_BEEF_0000_0000);
        LinuxContext damaged = LinuxContext.Open(overlay);
        (List<LinuxProcess> rows, List<string> notes) = LinuxProcesses.List(damaged);
        Assert.Equal(21, rows.Count);
        Assert.Contains(notes, n => n.Contains("list cycle", StringComparison.Ordinal));
        Assert.NotNull(rows[5].Doubt);
        Assert.Equal(all.Take(21).Select(r => r.Pid), rows.Select(r => r.Pid));
    }

    [SkippableFact]
    public void Bad_next_pointer_stops_the_walk_with_a_note()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(capture);
        (List<LinuxProcess> all, _) = LinuxProcesses.List(clean);
        var overlay = new OverlayMemory(capture);
        clean.Kernel.Kernel.TryTranslate(all[30].Offset + (ulong)clean.Profile.TaskTasks, out Translation t, out _);
        overlay.PatchUInt64(t.PhysicalAddress, 0x4141_4141_4141_4141);
        (List<LinuxProcess> rows, List<string> notes) = LinuxProcesses.List(LinuxContext.Open(overlay));
        Assert.Equal(31, rows.Count);
        Assert.Contains(notes, n => n.Contains("bad list pointer", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void Without_kallsyms_the_error_says_what_was_tried_and_an_isf_or_system_map_fixes_it()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxKernel real = LinuxKernel.Locate(capture);
        var overlay = new OverlayMemory(capture);
        // Break the token table: without it kallsyms cannot be decoded.
        var kallsyms = (Kallsyms)real.Symbols;
        overlay.Patch(kallsyms.TokenTablePhysicalAddress, new byte[2048]);
        var error = Assert.Throws<KernelNotFoundException>(() => LinuxKernel.Locate(overlay));
        Assert.Contains("kallsyms not found", error.Message, StringComparison.Ordinal);
        Assert.Contains("--isf", error.Message, StringComparison.Ordinal);
        Assert.Contains("--system-map", error.Message, StringComparison.Ordinal);

        // A System.map made of kallsyms' own addresses moved back to link time stands in for the real file.
        string map = Path.Combine(Path.GetTempPath(), $"cloudmem-{Guid.NewGuid():N}.map");
        try
        {
            File.WriteAllLines(map, kallsyms.Symbols.Where(s => s.Address >= LinuxKernel.StartKernelMap)
                .Select(s => $"{s.Address - real.VirtualSlide:x16} {s.Type} {s.Name}"));
            LinuxContext context = LinuxContext.Open(overlay, new LinuxOptions(SystemMapPath: map));
            Assert.Equal(real.VirtualSlide, context.Kernel.VirtualSlide);
            Assert.Equal(real.DirectoryTableBase, context.Kernel.DirectoryTableBase);
            Assert.True(LinuxProcesses.List(context).Processes.Count > 40);
        }
        finally
        {
            File.Delete(map);
        }
    }

    [SkippableFact]
    public void Without_btf_the_error_names_the_isf_option_and_the_isf_works()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        Assert.True(BtfLoader.TryFind(capture, out ulong btfAt, out _));
        var overlay = new OverlayMemory(capture);
        overlay.Patch(btfAt, new byte[8]);
        var error = Assert.Throws<KernelNotFoundException>(() => LinuxContext.Open(overlay));
        Assert.Contains("--isf", error.Message, StringComparison.Ordinal);
        string? isf = SharedIsf();
        Skip.If(isf is null, Fixture.NoKernelIsf());
        LinuxContext fromIsf = LinuxContext.Open(overlay, new LinuxOptions(IsfPath: isf));
        LinuxContext fromBtf = LinuxContext.Open(capture);
        Assert.Equal(LinuxProcesses.List(fromBtf).Processes.Select(p => (p.Pid, p.Ppid, p.Comm, p.Uid)),
            LinuxProcesses.List(fromIsf).Processes.Select(p => (p.Pid, p.Ppid, p.Comm, p.Uid)));
    }

    /// <summary>A minimal ISF with the given linux_banner/_text symbols (and banner text when given).</summary>
    private static string OtherKernelIsf(TempDir dir, string? banner, ulong bannerAddress, ulong textAddress)
    {
        string constant = banner is null ? "" : $", \"constant_data\": \"{Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(banner + "\n\0"))}\"";
        string json = $$"""
            { "metadata": { "format": "6.2.0" }, "base_types": {}, "user_types": {}, "enums": {},
              "symbols": { "linux_banner": { "address": {{bannerAddress}}{{constant}} }, "_text": { "address": {{textAddress}} } } }
            """;
        return dir.Write("other.json", System.Text.Encoding.UTF8.GetBytes(json));
    }

    [SkippableFact]
    public void An_isf_of_another_kernel_is_refused_naming_both_banners()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxKernel real = LinuxKernel.Locate(capture);
        using var dir = new TempDir();
        const string Other = "Linux version 9.9.9-other (nobody@example) #1 SMP";
        var error = Assert.Throws<KernelNotFoundException>(() => LinuxContext.Open(capture,
            new LinuxOptions(IsfPath: OtherKernelIsf(dir, Other, 0xFFFFFFFF82000000, 0xFFFFFFFF81000000))));
        Assert.Contains(Other, error.Message, StringComparison.Ordinal);
        Assert.Contains(real.Banner.Text.Trim(), error.Message, StringComparison.Ordinal);
        Assert.Contains("--isf other.json", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);

        // Without banner text, linux_banner's place against _text must agree with kallsyms.
        Assert.True(real.Symbols.TryGetAddress("linux_banner", out ulong banner));
        Assert.True(real.Symbols.TryGetAddress("_text", out ulong text));
        var moved = Assert.Throws<KernelNotFoundException>(() => LinuxContext.Open(capture,
            new LinuxOptions(IsfPath: OtherKernelIsf(dir, null, 0xFFFFFFFF81000000 + (banner - text) + 0x1000, 0xFFFFFFFF81000000))));
        Assert.Contains($"_text+0x{banner - text + 0x1000:X}", moved.Message, StringComparison.Ordinal);
        Assert.Contains($"_text+0x{banner - text:X}", moved.Message, StringComparison.Ordinal);
        Assert.Contains(real.Banner.Text.Trim(), moved.Message, StringComparison.Ordinal);
    }
}
