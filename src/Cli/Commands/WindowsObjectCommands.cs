using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of windows.handles: those of <see cref="WindowsPluginSettings"/> (sealed, so repeated here) plus a pid filter.</summary>
internal sealed class WindowsHandlesSettings : CaptureSettings
{
    [CommandOption("--symbols <DIR>")]
    [Description("A symbol directory holding windows/<pdb>/<GUID>-<age>.json.xz (repeatable; the per-user cache ${XDG_CACHE_HOME:-~/.cache}/cloudmem/symbols is searched after these)")]
    public string[] Symbols { get; init; } = [];

    [CommandOption("--pid <PID>")]
    [Description("Only these processes (repeatable)")]
    public long[] Pid { get; init; } = [];
}

[Description("Open handles of each Windows process (pid, process, object offset, handle value, type, granted access, name)")]
internal sealed class WindowsHandlesCommand : Command<WindowsHandlesSettings>
{
    public override int Execute(CommandContext context, WindowsHandlesSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        WindowsKernel kernel = WindowsKernel.Open(memory, SymbolStore.WithUserCache(settings.Symbols), cancellationToken);
        ISet<long>? pids = settings.Pid.Length == 0 ? null : settings.Pid.ToHashSet();
        ReportWriter.Write(WindowsHandles.Handles(kernel, pids, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}

[Description("Windows kernel modules on PsLoadedModuleList (offset, base, size, name, path)")]
internal sealed class WindowsModulesCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsModules.Modules(kernel, ct);
}

[Description("Windows kernel modules found by scanning physical memory for 'MmLd' pool allocations, with OnList against PsLoadedModuleList")]
internal sealed class WindowsModScanCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsModules.ModScan(kernel, ct);
}
