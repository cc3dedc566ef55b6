using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("The kernel log (dmesg) from the printk ring buffer of Linux 5.10+: sequence, time, level, caller, text")]
internal sealed class LinuxDmesgCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct) => LinuxDmesg.Dmesg(context, ct);
}

[Description("Environment variables of each process, read from the process's own memory (mm->env_start..env_end)")]
internal sealed class LinuxEnvarsCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct)
        => LinuxEnvars.Envars(context, Pids(settings), ct);
}

[Description("Bash command history (with times) recovered from the heap of bash/sh processes, or of the --pid processes")]
internal sealed class LinuxBashHistoryCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, LinuxPluginSettings settings, CancellationToken ct)
        => LinuxBash.Bash(context, Pids(settings), ct);
}
