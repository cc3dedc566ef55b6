using System.ComponentModel;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Identify a capture: format, physical runs, metadata (VMCOREINFO, CPU registers) and the kernel banner")]
internal sealed class InfoCommand : Command<InfoCommand.Settings>
{
    internal sealed class Settings : CaptureSettings
    {
        [CommandOption("--no-banner")]
        [Description("Do not scan memory for the kernel banner")]
        public bool NoBanner { get; init; }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        CaptureInfo info = CaptureInfo.Build(settings.Image, memory, !settings.NoBanner, cancellationToken);
        ReportOutput.Write(info, settings.OutputFormat);
        return (int)ExitCode.Ok;
    }
}

/// <summary>Opens captures for commands.</summary>
internal static class CaptureFiles
{
    public static RunMappedMemory Open(string path, string? format)
        => CaptureOpening.Open(path, format);
}
