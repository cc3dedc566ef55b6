using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of the per-process Windows plugins: symbols and the --pid filter.</summary>
internal sealed class WindowsProcessPluginSettings : CaptureSettings
{
    [CommandOption("--symbols <DIR>")]
    [Description("A symbol directory holding windows/<pdb>/<GUID>-<age>.json.xz (repeatable; the per-user cache ${XDG_CACHE_HOME:-~/.cache}/cloudmem/symbols is searched after these)")]
    public string[] Symbols { get; init; } = [];

    [CommandOption("--pid <PID>")]
    [Description("Only these processes (repeat the option for several)")]
    public int[] Pid { get; init; } = [];

    /// <summary>The --pid filter, or null for every process.</summary>
    public ISet<int>? Pids => Pid.Length == 0 ? null : Pid.ToHashSet();
}

/// <summary>Runs one per-process Windows plugin: open, locate the kernel and its symbols, render the rows.</summary>
internal abstract class WindowsProcessPluginCommand : Command<WindowsProcessPluginSettings>
{
    protected abstract IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken cancellationToken);

    public override int Execute(CommandContext context, WindowsProcessPluginSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        WindowsKernel kernel = WindowsKernel.Open(memory, SymbolStore.WithUserCache(settings.Symbols), cancellationToken);
        ReportWriter.Write(Run(kernel, settings, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}

[Description("Windows kernel facts: kernel base, DTB, self-reference index, PDB GUID/age, symbol table, capture format, processors, build")]
internal sealed class WindowsInfoCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsInfo.Info(kernel);
}

[Description("Windows process command lines from the PEB's process parameters")]
internal sealed class WindowsCmdLineCommand : WindowsProcessPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.CmdLine(kernel, settings.Pids, ct);
}

[Description("Windows process environment variables from the PEB's process parameters")]
internal sealed class WindowsEnvarsCommand : WindowsProcessPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.Envars(kernel, settings.Pids, ct);
}

[Description("Windows loaded modules of each process (the PEB's InLoadOrderModuleList)")]
internal sealed class WindowsDllListCommand : WindowsProcessPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.DllList(kernel, settings.Pids, ct);
}

[Description("Windows threads of each process with start addresses resolved to modules; threads starting outside every module are flagged")]
internal sealed class WindowsThreadsCommand : WindowsProcessPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsThreads.Threads(kernel, settings.Pids, ct);
}

[Description("Windows token SIDs of each process with well-known names")]
internal sealed class WindowsGetSidsCommand : WindowsProcessPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsTokens.GetSids(kernel, settings.Pids, ct);
}
