using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Windows;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Windows kernel facts: kernel base, DTB, self-reference index, PDB GUID/age, symbol table, capture format, processors, build")]
internal sealed class WindowsInfoCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsInfo.Info(kernel);
}

[Description("Windows process command lines from the PEB's process parameters")]
internal sealed class WindowsCmdLineCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.CmdLine(kernel, settings.Pids, ct);
}

[Description("Windows process environment variables from the PEB's process parameters")]
internal sealed class WindowsEnvarsCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.Envars(kernel, settings.Pids, ct);
}

[Description("Windows loaded modules of each process (the PEB's InLoadOrderModuleList)")]
internal sealed class WindowsDllListCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsPeb.DllList(kernel, settings.Pids, ct);
}

[Description("Windows threads of each process with start addresses resolved to modules; threads starting outside every module are flagged")]
internal sealed class WindowsThreadsCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsThreads.Threads(kernel, settings.Pids, ct);
}

[Description("Windows token SIDs of each process with well-known names")]
internal sealed class WindowsGetSidsCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsTokens.GetSids(kernel, settings.Pids, ct);
}
