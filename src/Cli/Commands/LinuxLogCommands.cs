using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("The kernel log (dmesg) from the printk ring buffer of Linux 5.10+: sequence, time, level, caller, text")]
internal sealed class LinuxDmesgCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, CancellationToken ct) => LinuxDmesg.Dmesg(context, ct);
}

[Description("Environment variables of each process, read from the process's own memory (mm->env_start..env_end)")]
internal sealed class LinuxEnvarsCommand : Command<LinuxPluginSettings>
{
    public override int Execute(CommandContext context, LinuxPluginSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        LinuxContext linux = LinuxContext.Open(memory, new LinuxOptions(settings.Isf, settings.SystemMap), cancellationToken);
        ISet<int>? pids = settings.Pid.Length == 0 ? null : settings.Pid.ToHashSet();
        ReportWriter.Write(LinuxEnvars.Envars(linux, pids, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}

[Description("Bash command history (with times) recovered from the heap of bash/sh processes, or of the --pid processes")]
internal sealed class LinuxBashHistoryCommand : Command<LinuxPluginSettings>
{
    public override int Execute(CommandContext context, LinuxPluginSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        LinuxContext linux = LinuxContext.Open(memory, new LinuxOptions(settings.Isf, settings.SystemMap), cancellationToken);
        ISet<int>? pids = settings.Pid.Length == 0 ? null : settings.Pid.ToHashSet();
        ReportWriter.Write(LinuxBash.Bash(linux, pids, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}
