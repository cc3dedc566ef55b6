using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;

namespace CloudMem.Engine.Linux;

/// <summary>The Linux plugins of the registry (names as Volatility spells them).</summary>
internal static class LinuxPluginSet
{
    /// <summary>The Linux kernel and type model of a capture, located once per <see cref="PluginContext"/>.</summary>
    internal static LinuxContext Linux(this PluginContext context, CancellationToken ct)
        => context.Get(c => LinuxContext.Open(c.Memory, new LinuxOptions(c.Symbols.IsfPath, c.Symbols.SystemMapPath, c.Logger, c.Symbols.Cache), ct));

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (one file per plugin set, no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        const PluginInputs pid = PluginInputs.ProcessFilter;
        PluginRegistry.Register("linux.kernel", "Where the kernel is: banner, kallsyms, KASLR slide, phys_base, page tables (found from the image alone)", TargetOs.Linux, PluginInputs.None,
            (c, a, ct) => KernelReport.From(c.Get(x => LinuxKernel.Locate(x.Memory, cancellationToken: ct))));
        PluginRegistry.Register("linux.pslist", "Processes on the kernel's task list (pid, ppid, comm, uids, kernel thread, threads, namespace pid, start)", TargetOs.Linux, pid,
            (c, a, ct) => a.OnlyPids(LinuxPlugins.PsList(c.Linux(ct), ct), p => p.Pid));
        PluginRegistry.Register("linux.psaux", "Processes with their full command lines, read from each process's own memory", TargetOs.Linux, pid,
            (c, a, ct) => a.OnlyPids(LinuxPlugins.PsAux(c.Linux(ct), ct), p => p.Pid));
        PluginRegistry.Register("linux.pstree", "Processes as a parent/child tree (--pid: those processes, their ancestors and descendants)", TargetOs.Linux, pid,
            (c, a, ct) => LinuxPlugins.PsTree(c.Linux(ct), a.IntPids, ct));
        PluginRegistry.Register("linux.psscan", "task_structs found by scanning physical memory, against the task list (exited, zombie, unlinked/hidden tasks)", TargetOs.Linux, pid,
            (c, a, ct) => a.OnlyPids(LinuxPsScan.PsScan(c.Linux(ct), ct, c.Progress), p => p.Tgid));
        PluginRegistry.Register("linux.sockstat", "Open sockets per process: TCP/UDP v4/v6 addresses, ports and state, UNIX socket paths, inode, fd", TargetOs.Linux, pid,
            (c, a, ct) => a.OnlyPids(LinuxPlugins.SockStat(c.Linux(ct), ct), s => s.Pid));
        PluginRegistry.Register("linux.lsmod", "Loaded kernel modules (name, base, size)", TargetOs.Linux, PluginInputs.None,
            (c, a, ct) => LinuxPlugins.LsMod(c.Linux(ct), ct));
        PluginRegistry.Register("linux.hidden_modules", "Kernel modules across the module list, sysfs and a scan of the module area: modules hidden from lsmod", TargetOs.Linux, PluginInputs.None,
            (c, a, ct) => LinuxHiddenModules.HiddenModules(c.Linux(ct), ct));
        PluginRegistry.Register("linux.maps", "Memory mappings of each process: range, permissions, offset, inode, path ([heap], [stack], memfd, deleted)", TargetOs.Linux, pid,
            (c, a, ct) => LinuxPlugins.Maps(c.Linux(ct), a.IntPids, ct));
        PluginRegistry.Register("linux.malfind", "Suspicious executable memory: anonymous executable, memfd or deleted files, writable+executable; hexdump and disassembly", TargetOs.Linux, pid,
            (c, a, ct) => LinuxMalfind.Run(c.Linux(ct), a.IntPids, ct));
        PluginRegistry.Register("linux.envars", "Environment variables of each process, from its own memory", TargetOs.Linux, pid,
            (c, a, ct) => LinuxEnvars.Envars(c.Linux(ct), a.IntPids, ct));
        PluginRegistry.Register("linux.bash", "Bash command history (with times) recovered from the heaps of bash/sh processes", TargetOs.Linux, pid,
            (c, a, ct) => LinuxBash.Bash(c.Linux(ct), a.IntPids, ct));
        PluginRegistry.Register("linux.yarascan", "YARA rules (--yara FILE|DIR, via libyara) over each process's readable mappings: pid, rule, string, virtual and physical address", TargetOs.Linux,
            pid | PluginInputs.YaraRules, (c, a, ct) => LinuxYaraScan.Scan(c.Linux(ct), a.YaraRules!, a.IntPids, ct));
        PluginRegistry.Register("linux.dmesg", "The kernel log from the printk ring buffer (5.10+): sequence, time, level, caller, text", TargetOs.Linux, PluginInputs.None,
            (c, a, ct) => LinuxDmesg.Dmesg(c.Linux(ct), ct));
        PluginRegistry.Register("linux.procdump", "A process's mappings written to files and its ELF executable rebuilt (never overwrites)", TargetOs.Linux,
            PluginInputs.SingleProcess | PluginInputs.OutputDirectory,
            (c, a, ct) => LinuxProcDump.Run(c.Linux(ct), (int)a.Pids!.Single(), a.OutputDirectory!, ct: ct));
    }
}
