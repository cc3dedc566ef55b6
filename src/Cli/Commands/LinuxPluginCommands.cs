using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings every Linux command has: the optional symbol inputs.</summary>
internal class LinuxSettings : CaptureSettings
{
    [CommandOption("--isf <FILE>")]
    [Description("Optional: a Volatility ISF (.json or .json.xz) of the kernel, used instead of the BTF found in memory")]
    public string? Isf { get; init; }

    [CommandOption("--system-map <FILE>")]
    [Description("Optional: the kernel's System.map, used only when kallsyms cannot be found in memory")]
    public string? SystemMap { get; init; }

    /// <summary>The options as the engine takes them.</summary>
    public LinuxOptions Options => new(Isf, SystemMap);
}

/// <summary>Settings of the Linux plugins.</summary>
internal sealed class LinuxPluginSettings : LinuxSettings
{
    [CommandOption("--pid <PID>")]
    [Description("Only these processes (repeat the option for several), for plugins that work per process")]
    public int[] Pid { get; init; } = [];
}

/// <summary>Runs one Linux plugin: open, locate the kernel, render the rows.</summary>
internal abstract class LinuxPluginCommand : Command<LinuxPluginSettings>
{
    protected abstract IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken cancellationToken);

    /// <summary>The --pid filter, or null for every process.</summary>
    protected static ISet<int>? Pids(LinuxPluginSettings settings) => settings.Pid.Length == 0 ? null : settings.Pid.ToHashSet();

    public override int Execute(CommandContext context, LinuxPluginSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        LinuxContext linux = LinuxContext.Open(memory, settings.Options, cancellationToken);
        ReportWriter.Write(Run(linux, settings, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}

[Description("Processes on the kernel's task list (pid, ppid, comm, uids, kernel thread, threads, namespace pid)")]
internal sealed class LinuxPsListCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPlugins.PsList(context, ct);
}

[Description("Processes with their full command lines, read from each process's own memory")]
internal sealed class LinuxPsAuxCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPlugins.PsAux(context, ct);
}

[Description("Processes as a parent/child tree")]
internal sealed class LinuxPsTreeCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPlugins.PsTree(context, ct);
}

[Description("Open sockets per process: TCP/UDP (v4/v6) addresses, ports and state, UNIX socket paths, inode, fd")]
internal sealed class LinuxSockStatCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPlugins.SockStat(context, ct);
}

[Description("Loaded kernel modules (name, base, size)")]
internal sealed class LinuxLsModCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPlugins.LsMod(context, ct);
}

[Description("Memory mappings of each process: range, permissions, offset, inode and file path (or [[heap]], [[stack]], anonymous, memfd, deleted)")]
internal sealed class LinuxMapsCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct)
        => LinuxPlugins.Maps(context, Pids(settings), ct);
}

[Description("Suspicious executable memory per process: anonymous executable, memfd or deleted executable files, writable+executable; with hexdump and disassembly")]
internal sealed class LinuxMalfindCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct)
        => new LinuxMalfindReport(LinuxMalfind.Run(context, Pids(settings), ct));
}

[Description("task_structs found by scanning physical memory, compared with the task list (finds exited, zombie and unlinked/hidden tasks)")]
internal sealed class LinuxPsScanCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxPsScan.PsScan(context, ct);
}

[Description("Kernel modules compared across the module list, sysfs (module_kset) and a scan of the module area: flags modules hidden from lsmod")]
internal sealed class LinuxHiddenModulesCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxHiddenModules.HiddenModules(context, ct);
}
