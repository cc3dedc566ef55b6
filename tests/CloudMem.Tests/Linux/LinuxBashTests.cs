using System.Text;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>
/// linux.bash. The fixture's shells are busybox ash, which keeps no _hist_entry array, so there is no real bash
/// history to compare with: a synthetic history (entries and strings laid out as bash does) is planted into a real
/// process's resident heap pages and that process renamed "bash", then the plugin must find exactly it.
/// </summary>
public sealed class LinuxBashTests
{
    private static readonly (string Line, long Seconds)[] s_history =
    [
        ("ls -la /root", 1_700_000_000),
        ("cat /etc/shadow | grep root", 1_700_000_060),
        ("curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/", 1_700_000_123),
    ];

    [SkippableFact]
    public void A_busybox_only_capture_has_no_bash_history_and_no_error()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxBashCommand> rows, List<string> notes) = LinuxBash.List(context);
        Assert.Empty(rows);
        // Why nothing was found is said, once.
        Assert.Equal(["no bash history: no user process named bash or sh on the task list"], notes);
        // Scanning every user process's heap whatever its name finds nothing either (no false positives), and each
        // process with a readable heap is named with the reason.
        var all = LinuxProcesses.List(context).Processes.Where(p => !p.KernelThread).Select(p => p.Pid).ToHashSet();
        (List<LinuxBashCommand> none, List<string> why) = LinuxBash.List(context, all);
        Assert.Empty(none);
        Assert.Contains(why, n => n.Contains("no timestamped history entries on its heap", StringComparison.Ordinal));
        Assert.All(LinuxProcesses.List(context).Processes.Where(p => !p.KernelThread && p.Mm != 0),
            p => Assert.Contains(why, n => n.StartsWith($"pid {p.Pid} ({p.Comm}): no ", StringComparison.Ordinal)));
        Assert.Equal(["no bash history: none of the pids 999999 is a user process on the task list"],
            LinuxBash.List(context, new HashSet<int> { 999_999 }).Notes);
    }

    [SkippableFact]
    public void A_planted_history_is_found_with_its_times_in_the_process_renamed_bash()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        // A user process with a heap of at least two resident pages (the scenario's helper processes have one).
        LinuxProcess victim = LinuxProcesses.List(context).Processes.First(p => p.Comm == "fxhelper" && HasTwoResidentHeapPages(context, p));
        LinuxMapping heap = LinuxMaps.List(context, new HashSet<int> { victim.Pid }).Maps.Single(m => m.Path == "[heap]");
        Assert.True(context.Kernel.Kernel.TryReadUInt64(victim.Mm + (ulong)context.Profile.MmPgd, out ulong pgd));
        AddressSpace user = context.ProcessSpace(pgd);
        // Two resident heap pages: the entry array in one, the strings in the other (as malloc would scatter them).
        var pages = new List<(ulong Va, ulong Pa)>();
        for (ulong va = heap.Start; va < heap.End && pages.Count < 2; va += 4096)
        {
            if (user.TryTranslate(va, out Translation t, out _))
            {
                pages.Add((va, t.PhysicalAddress));
            }
        }
        Assert.Equal(2, pages.Count);

        var overlay = new OverlayMemory(memory);
        byte[] strings = new byte[2048];
        byte[] entries = new byte[(s_history.Length + 1) * 24];
        int at = 16;
        for (int i = 0; i < s_history.Length; i++)
        {
            ulong lineVa = pages[1].Va + 0x800 + (ulong)at;
            at += Put(strings, at, s_history[i].Line);
            ulong stampVa = pages[1].Va + 0x800 + (ulong)at;
            at += Put(strings, at, "#" + s_history[i].Seconds);
            // Stored newest first in the array, to check the plugin orders by time.
            int slot = s_history.Length - 1 - i;
            BitConverter.GetBytes(lineVa).CopyTo(entries, slot * 24);
            BitConverter.GetBytes(stampVa).CopyTo(entries, slot * 24 + 8);
        }
        // A decoy: a pointer to "#12345" (too short to be a time) must not give a row.
        ulong decoyVa = pages[1].Va + 0x800 + (ulong)at;
        at += Put(strings, at, "#12345");
        BitConverter.GetBytes(pages[1].Va + 0x810).CopyTo(entries, s_history.Length * 24);
        BitConverter.GetBytes(decoyVa).CopyTo(entries, s_history.Length * 24 + 8);
        overlay.Patch(pages[0].Pa + 0x100, entries);
        overlay.Patch(pages[1].Pa + 0x800, strings);
        // Rename the process: task_struct.comm = "bash".
        Assert.True(context.Kernel.Kernel.TryTranslate(victim.Offset + (ulong)context.Profile.TaskComm, out Translation comm, out _));
        overlay.Patch(comm.PhysicalAddress, Encoding.ASCII.GetBytes("bash\0\0\0\0\0\0\0\0\0\0\0\0"));

        LinuxContext patched = LinuxContext.Open(overlay);
        (List<LinuxBashCommand> rows, List<string> notes) = LinuxBash.List(patched);
        // Heap pages the process never touched are not in the capture: said, not an error.
        Assert.All(notes, n => Assert.Contains("heap pages are not in the capture", n, StringComparison.Ordinal));
        Assert.All(rows, r => Assert.Equal((victim.Pid, "bash"), (r.Pid, r.Comm)));
        Assert.Equal(s_history.Select(h => h.Line), rows.Select(r => r.Command));
        Assert.Equal(s_history.Select(h => h.Seconds), rows.Select(r => r.UnixTime));
        Assert.Equal(new DateTimeOffset(2023, 11, 14, 22, 13, 20, TimeSpan.Zero), rows[0].Time);
        Assert.Equal(pages[0].Va + 0x100 + 2 * 24, rows[0].Entry);

        // Without the rename, the same history is found when the pid is asked for.
        var unrenamed = new OverlayMemory(memory);
        unrenamed.Patch(pages[0].Pa + 0x100, entries);
        unrenamed.Patch(pages[1].Pa + 0x800, strings);
        LinuxContext plain = LinuxContext.Open(unrenamed);
        Assert.Empty(LinuxBash.List(plain).Commands);
        Assert.Equal(3, LinuxBash.List(plain, new HashSet<int> { victim.Pid }).Commands.Count);
    }

    private static bool HasTwoResidentHeapPages(LinuxContext context, LinuxProcess process)
    {
        LinuxMapping? heap = LinuxMaps.List(context, new HashSet<int> { process.Pid }).Maps.FirstOrDefault(m => m.Path == "[heap]");
        if (heap is null || !context.Kernel.Kernel.TryReadUInt64(process.Mm + (ulong)context.Profile.MmPgd, out ulong pgd))
        {
            return false;
        }
        AddressSpace user = context.ProcessSpace(pgd);
        int resident = 0;
        for (ulong va = heap.Start; va < heap.End && resident < 2; va += 4096)
        {
            resident += user.TryTranslate(va, out _, out _) ? 1 : 0;
        }
        return resident >= 2;
    }

    private static int Put(byte[] buffer, int at, string text)
    {
        int n = Encoding.ASCII.GetBytes(text, buffer.AsSpan(at));
        buffer[at + n] = 0;
        return (n + 1 + 15) & ~15;
    }
}
