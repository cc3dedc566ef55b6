using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Windows;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Open handles of each Windows process (pid, process, object offset, handle value, type, granted access, name)")]
internal sealed class WindowsHandlesCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsHandles.Handles(kernel, settings.Pids, ct);
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
