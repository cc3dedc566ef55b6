using System.ComponentModel;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of linux.procdump: one process and an existing output directory.</summary>
internal sealed class LinuxProcDumpSettings : LinuxSettings
{
    [CommandOption("--pid <PID>")]
    [Description("The process to dump (required)")]
    public int? Pid { get; init; }

    [CommandOption("--out <DIR>")]
    [Description("Existing directory to write the files into (required; existing files are never overwritten)")]
    public string? Out { get; init; }

    public override ValidationResult Validate()
    {
        ValidationResult common = base.Validate();
        return !common.Successful ? common
            : Pid is null ? ValidationResult.Error("--pid is required")
            : string.IsNullOrEmpty(Out) ? ValidationResult.Error("--out DIR is required")
            : ValidationResult.Success();
    }
}

[Description("Writes a process's mappings to files (unreadable pages as zeros) and rebuilds its ELF executable from its file mappings")]
internal sealed class LinuxProcDumpCommand : Command<LinuxProcDumpSettings>
{
    public override int Execute(CommandContext context, LinuxProcDumpSettings settings, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(settings.Out))
        {
            throw new DirectoryNotFoundException($"output directory '{settings.Out}' does not exist (create it first)");
        }
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        LinuxContext linux = LinuxContext.Open(memory, settings.Options, cancellationToken);
        ReportWriter.Write(LinuxProcDump.Run(linux, settings.Pid!.Value, settings.Out!, ct: cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}
