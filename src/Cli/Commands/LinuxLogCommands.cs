using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;

namespace CloudMem.Cli.Commands;

[Description("The kernel log (dmesg) from the printk ring buffer of Linux 5.10+: sequence, time, level, caller, text")]
internal sealed class LinuxDmesgCommand : LinuxPluginCommand
{
    protected override IReport Run(LinuxContext context, CancellationToken ct) => LinuxDmesg.Dmesg(context, ct);
}
