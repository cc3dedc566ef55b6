using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>
/// Namespaced pids: pslist reports both the global pid and the pid inside the process's own pid namespace.
/// The fixture scenario plants no process in a child pid namespace (truth.json has no nspid), so the child
/// namespace is made by mutation: the task's struct pid gets level 1 and numbers[1].nr.
/// </summary>
public sealed class LinuxNamespacePidTests
{
    [SkippableFact]
    public void Processes_in_the_initial_namespace_have_no_separate_namespace_pid()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        Assert.All(LinuxProcesses.List(context).Processes, p => Assert.Null(p.NamespacePid));
    }

    [SkippableFact]
    public void A_process_in_a_child_pid_namespace_shows_its_global_and_its_namespace_pid()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext clean = LinuxContext.Open(memory);
        LinuxProfile p = clean.Profile;
        AddressSpace kernel = clean.Kernel.Kernel;
        LinuxProcess victim = LinuxProcesses.List(clean).Processes.Single(x => x.Uid == 1000);   // the scenario's alice process
        Assert.True(kernel.TryReadUInt64(victim.Offset + (ulong)p.TaskThreadPid, out ulong pid));
        Assert.True(kernel.TryReadUInt32(pid + (ulong)p.PidLevel, out uint level));
        Assert.Equal(0u, level);
        Assert.True(kernel.TryReadUInt32(pid + (ulong)p.PidNumbers + (ulong)p.UpidNr, out uint global));
        Assert.Equal((uint)victim.Pid, global);

        var overlay = new OverlayMemory(memory);
        overlay.Patch(LinuxPsScanTests.Physical(kernel, pid + (ulong)p.PidLevel), [1, 0, 0, 0]);
        overlay.Patch(LinuxPsScanTests.Physical(kernel, pid + (ulong)p.PidNumbers + (ulong)p.UpidSize + (ulong)p.UpidNr), [7, 0, 0, 0]);
        LinuxContext context = LinuxContext.Open(overlay);

        LinuxProcess process = LinuxPlugins.PsList(context).Rows.Single(x => x.Pid == victim.Pid);
        Assert.Equal(7, process.NamespacePid);
        Assert.Equal(1, process.Ppid);
        Assert.All(LinuxPlugins.PsList(context).Rows.Where(x => x.Pid != victim.Pid), x => Assert.Null(x.NamespacePid));

        LinuxScannedTask scanned = LinuxPsScan.Scan(context).Tasks.Single(t => t.Pid == victim.Pid);
        Assert.Equal(7, scanned.NamespacePid);
    }
}
