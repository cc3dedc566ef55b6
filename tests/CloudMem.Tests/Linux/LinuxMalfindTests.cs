using CloudMem.Engine.Core;
using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.malfind on the fixture's planted fileless and deleted executables, and on a mutated heap.</summary>
public sealed class LinuxMalfindTests
{
    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("nokaslr-novmci", "memory.kdump-snappy")]
    public void Memfd_and_deleted_executables_are_flagged_and_busybox_is_not(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        RowsReport<LinuxMalfindRow> report = LinuxMalfind.Run(context);
        using JsonDocument truth = Fixture.Truth(variant);
        var processes = truth.RootElement.GetProperty("processes").EnumerateArray()
            .Where(p => !p.GetProperty("kernel_thread").GetBoolean()).ToList();
        JsonElement memfd = processes.Single(p => p.GetProperty("exe").GetString()!.StartsWith("/memfd:fx-fileless", StringComparison.Ordinal));
        JsonElement deleted = processes.Single(p => p.GetProperty("exe").GetString() == "/tmp/fxdeleted (deleted)");

        LinuxMalfindRow m = Assert.Single(report.Rows, r => r.Pid == memfd.GetProperty("pid").GetInt32());
        Assert.Equal("/memfd:fx-fileless (deleted)", m.Path);
        Assert.Equal("r-xp", m.Flags);
        Assert.Contains("memfd", m.Reason, StringComparison.Ordinal);
        Assert.StartsWith("memfd:fx-filele", m.Comm, StringComparison.Ordinal);
        Assert.Equal(4, m.Hexdump.Count);
        Assert.True(m.Disassembly.Count >= 6, string.Join('\n', m.Disassembly));

        LinuxMalfindRow d = Assert.Single(report.Rows, r => r.Pid == deleted.GetProperty("pid").GetInt32());
        Assert.Equal("/tmp/fxdeleted (deleted)", d.Path);
        Assert.Equal("executable deleted file", d.Reason);
        Assert.Equal(4, d.Hexdump.Count);

        // Nothing else in the scenario is suspicious: busybox, fxhelper and their vdso pages are not reported.
        var busybox = processes.Where(p => p.GetProperty("exe").GetString() == "/bin/busybox").Select(p => p.GetProperty("pid").GetInt32()).ToHashSet();
        Assert.True(busybox.Count >= 5);
        Assert.DoesNotContain(report.Rows, r => busybox.Contains(r.Pid));
        Assert.Equal(2, report.Rows.Count);
    }

    [SkippableFact]
    public void A_heap_made_executable_is_reported_with_its_bytes_and_instructions()
    {
        using RunMappedMemory capture = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(capture);
        (List<LinuxMapping> maps, _) = LinuxMaps.List(clean);
        LinuxMapping heap = maps.First(m => m.Path == "[heap]" && m.Comm == "fxhelper");
        Assert.Equal("rw-p", heap.Flags);
        Assert.True(clean.Types.TryGetOffset("vm_area_struct", "vm_flags", out int flagsOffset));
        AddressSpace k = clean.Kernel.Kernel;
        Assert.True(k.TryTranslate(heap.Vma + (ulong)flagsOffset, out Translation t, out _));
        var overlay = new OverlayMemory(capture);
        overlay.PatchUInt64(t.PhysicalAddress, heap.VmFlags | 4);

        LinuxContext mutated = LinuxContext.Open(overlay);
        RowsReport<LinuxMalfindRow> report = LinuxMalfind.Run(mutated, new HashSet<int> { heap.Pid });
        LinuxMalfindRow row = Assert.Single(report.Rows);
        Assert.Equal(heap.Start, row.Start);
        Assert.Equal("rwxp", row.Flags);
        Assert.Equal("[heap]", row.Path);
        Assert.Equal("executable anonymous memory; writable and executable", row.Reason);

        // The hexdump and disassembly are of the bytes actually there.
        AddressSpace user = LinuxMalfind.UserSpace(mutated, heap.Pid, default)!;
        byte[] expected = new byte[64];
        Assert.Equal(64, user.Read(heap.Start, expected));
        Assert.Equal(CodeView.HexLines(expected, heap.Start), row.Hexdump);
        Assert.StartsWith($"0x{heap.Start:x12}  {expected[0]:x2} {expected[1]:x2} ", row.Hexdump[0], StringComparison.Ordinal);
        Assert.Equal(CodeView.Disassemble(expected, heap.Start, 8), row.Disassembly);
        Assert.NotEmpty(row.Disassembly);
        Assert.StartsWith($"0x{heap.Start:x12}  ", row.Disassembly[0], StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Disassembly_and_hexdump_of_known_bytes()
    {
        byte[] code = [0x55, 0x48, 0x89, 0xE5, 0x31, 0xC0, 0xC3, 0x41];
        IReadOnlyList<string> asm = CodeView.Disassemble(code, 0x7000, 8);
        Assert.Equal(["0x000000007000  push rbp", "0x000000007001  mov rbp, rsp", "0x000000007004  xor eax, eax", "0x000000007006  ret"], asm.Take(4));
        Assert.Contains("not an instruction", asm[4], StringComparison.Ordinal);
        Assert.Equal("0x000000007000  55 48 89 e5 31 c0 c3 41" + new string(' ', 8 * 3 + 2) + "UH..1..A", CodeView.HexLines(code, 0x7000)[0]);
    }

    [SkippableFact]
    public void Classification_of_flags_and_paths()
    {
        Assert.Null(LinuxMalfind.Classify(1 | 2, true, "[heap]"));
        Assert.Null(LinuxMalfind.Classify(1 | 4, true, "[vdso]"));
        Assert.Null(LinuxMalfind.Classify(1 | 4, false, "/bin/busybox"));
        Assert.Equal("executable anonymous memory", LinuxMalfind.Classify(1 | 4, true, ""));
        Assert.Equal("executable memfd file (fileless)", LinuxMalfind.Classify(1 | 4, false, "/memfd:x (deleted)"));
        Assert.Equal("executable deleted file; writable and executable", LinuxMalfind.Classify(7, false, "/tmp/a (deleted)"));
        Assert.Equal("writable and executable", LinuxMalfind.Classify(7, false, "/usr/lib/jit.so"));
    }
}
