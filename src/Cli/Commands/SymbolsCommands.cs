using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of <c>symbols check</c>.</summary>
internal sealed class SymbolsCheckSettings : WindowsPluginSettings
{
    public override ValidationResult Validate()
        => Pid.Length > 0 || Out is not null || Base is not null
            ? ValidationResult.Error("symbols check takes no --pid, --out or --base")
            : base.Validate();
}

[Description("Find the Windows kernel image in a capture (PDB name, GUID, age) and check that a symbol table for it is available")]
internal sealed class SymbolsCheckCommand : Command<SymbolsCheckSettings>
{
    public override int Execute(CommandContext context, SymbolsCheckSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        SymbolStore store = settings.Symbols.WindowsStore();
        SymbolCheckReport report = SymbolCheck.Run(memory, settings.Image, store, cancellationToken);
        ReportOutput.Write(report, settings.OutputFormat);
        if (report.FailureSummary is { } failure)
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"cloudmem: error: {failure}");
            return (int)ExitCode.Error;
        }
        return (int)ExitCode.Ok;
    }
}
