using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.psscan: task_structs found by scanning physical memory, compared with the task list.</summary>
public sealed class LinuxPsScanTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "basic", "memory.lime" },
        { "nokaslr-novmci", "memory.raw" },
    };

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Scan_finds_every_truth_process_and_its_listed_set_equals_pslist(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        (List<LinuxScannedTask> scanned, List<string> notes) = LinuxPsScan.Scan(context);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"scan took {clock.Elapsed}");
        Assert.Empty(notes);
        (List<LinuxProcess> listed, _) = LinuxProcesses.List(context);

        // Every task_struct is found once, at its direct-map address.
        Assert.Equal(scanned.Count, scanned.Select(t => t.PhysicalOffset).Distinct().Count());
        Assert.All(scanned, t => Assert.Equal(t.PhysicalOffset + context.Kernel.PageOffsetBase, t.Offset));

        using JsonDocument truth = Fixture.Truth(variant);
        foreach (JsonElement expected in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            int pid = expected.GetProperty("pid").GetInt32();
            LinuxScannedTask? task = scanned.FirstOrDefault(t => t.Pid == pid && t.Tgid == pid);
            Assert.True(task is not null, $"pid {pid} ({expected.GetProperty("comm").GetString()}) not found by the scan");
            Assert.Equal(expected.GetProperty("ppid").GetInt32(), task!.Ppid);
            Assert.Equal((uint)expected.GetProperty("uid").GetInt32(), task.Uid);
            Assert.StartsWith(task.Comm, expected.GetProperty("comm").GetString()!, StringComparison.Ordinal);
            if (expected.GetProperty("state").GetString() == "Z")
            {
                Assert.Equal("EXIT_ZOMBIE", task.ExitState);
            }
        }

        // The rest are tasks that exited (EXIT_DEAD, cred already released) whose slab memory was not reused yet;
        // the fixtures hold five each (e.g. basic: sleep 107, ip 327, hexdump 164, grep 323, cat 326, as Volatility's psscan also finds).
        var exited = scanned.Where(t => t.State != "listed").ToList();
        Assert.All(exited, t =>
        {
            Assert.Equal("exited/unlinked", t.State);
            Assert.Equal("EXIT_DEAD", t.ExitState);
            Assert.False(t.OnTaskList);
            Assert.Null(t.Uid);
        });
        Assert.InRange(exited.Count, 1, 20);

        var listedRows = scanned.Where(t => t.State == "listed").ToList();
        Assert.All(listedRows, t => Assert.True(t.OnTaskList && t.Linked));
        Assert.Equal(listed.Select(p => (p.Pid, p.Comm)).OrderBy(x => x), listedRows.Select(t => (t.Tgid, t.Comm)).OrderBy(x => x));
    }

    [SkippableFact]
    public void A_task_unlinked_from_the_task_list_is_missing_from_pslist_but_found_by_psscan()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(memory);
        LinuxProcess victim = LinuxProcesses.List(clean).Processes.Single(p => p.Uid == 1000);   // the scenario's alice process
        LinuxProfile p = clean.Profile;
        AddressSpace kernel = clean.Kernel.Kernel;
        ulong entry = victim.Offset + (ulong)p.TaskTasks;
        Assert.True(kernel.TryReadUInt64(entry, out ulong next));
        Assert.True(kernel.TryReadUInt64(entry + 8, out ulong prev));

        var overlay = new OverlayMemory(memory);
        overlay.PatchUInt64(Physical(kernel, prev), next);        // prev->next = next
        overlay.PatchUInt64(Physical(kernel, next + 8), prev);    // next->prev = prev
        // Make it a zombie as well, to see exit_state decoded.
        overlay.Patch(Physical(kernel, victim.Offset + (ulong)p.TaskExitState), [0x20, 0, 0, 0]);

        LinuxContext hidden = LinuxContext.Open(overlay);
        (List<LinuxProcess> listed, List<string> listNotes) = LinuxProcesses.List(hidden);
        Assert.Empty(listNotes);
        Assert.DoesNotContain(listed, x => x.Pid == victim.Pid);
        Assert.Equal(LinuxProcesses.List(clean).Processes.Count - 1, listed.Count);

        LinuxScannedTask found = LinuxPsScan.Scan(hidden).Tasks.Single(t => t.Pid == victim.Pid);
        Assert.False(found.OnTaskList);
        Assert.False(found.Linked);
        Assert.Equal("exited/unlinked", found.State);
        Assert.Equal("EXIT_ZOMBIE", found.ExitState);
        Assert.Equal(1000u, found.Uid);
        Assert.Equal(1, found.Ppid);
    }

    [SkippableFact]
    public void A_task_whose_tgid_is_a_listed_process_is_reported_as_its_thread()
    {
        // The fixture has no multi-threaded process: an exited task is turned into a live thread of a listed process.
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(memory);
        int leader = LinuxProcesses.List(clean).Processes.Single(p => p.Uid == 1000).Pid;
        LinuxScannedTask exited = LinuxPsScan.Scan(clean).Tasks.First(t => t.State == "exited/unlinked" && t.Pid != leader);
        Assert.Equal("exited/unlinked", exited.State);
        ulong pa = exited.PhysicalOffset;
        var overlay = new OverlayMemory(memory);
        overlay.Patch(pa + (ulong)clean.Profile.TaskTgid, BitConverter.GetBytes(leader));
        overlay.Patch(pa + (ulong)clean.Profile.TaskExitState, BitConverter.GetBytes(0));

        LinuxScannedTask thread = LinuxPsScan.Scan(LinuxContext.Open(overlay)).Tasks.Single(t => t.Pid == exited.Pid);
        Assert.Equal("thread", thread.State);
        Assert.Equal(leader, thread.Tgid);
        Assert.False(thread.OnTaskList);
        Assert.Null(thread.ExitState);
    }

    [SkippableTheory]
    [InlineData("init", true)]
    [InlineData("memfd:fx-filele", true)]
    [InlineData("", false)]
    [InlineData("0123456789abcdef", false)]
    public void Comm_shape(string comm, bool valid)
    {
        byte[] bytes = new byte[16];
        System.Text.Encoding.ASCII.GetBytes(comm).AsSpan(0, Math.Min(16, comm.Length)).CopyTo(bytes);
        Assert.Equal(valid, LinuxPsScan.IsComm(bytes));
        bytes[15] = 1;
        Assert.False(LinuxPsScan.IsComm(bytes));
    }

    internal static ulong Physical(AddressSpace kernel, ulong va)
    {
        Assert.True(kernel.TryTranslate(va, out Translation t, out TranslationFault fault), $"0x{va:X}: {fault}");
        return t.PhysicalAddress;
    }
}
