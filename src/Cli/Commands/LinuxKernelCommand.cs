using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Locate the Linux kernel from the image alone: banner, kallsyms, KASLR slide, phys_base, kernel page tables")]
internal sealed class LinuxKernelCommand : Command<CaptureSettings>
{
    public override int Execute(CommandContext context, CaptureSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        LinuxKernel kernel = LinuxKernel.Locate(memory, cancellationToken: cancellationToken);
        ReportWriter.Write(KernelReport.From(kernel), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}
