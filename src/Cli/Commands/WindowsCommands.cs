using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of the Windows plugins.</summary>
internal class WindowsPluginSettings : CaptureSettings
{
    [CommandOption("--symbols <DIR>")]
    [Description("A symbol directory holding windows/<pdb>/<GUID>-<age>.json.xz or <pdb>/<GUID><age hex>/<pdb> (repeatable; the per-user cache ${XDG_CACHE_HOME:-~/.cache}/cloudmem/symbols is searched after these)")]
    public string[] Symbols { get; init; } = [];

    [CommandOption(SymbolServerOption.Template)]
    [Description(SymbolServerOption.Description)]
    public string? SymbolServer { get; init; }

    public override ValidationResult Validate() => SymbolServerOption.Validate(SymbolServer) ?? base.Validate();
}

/// <summary>Settings of the per-process Windows plugins: the common ones plus a pid filter.</summary>
internal class WindowsProcessPluginSettings : WindowsPluginSettings
{
    [CommandOption("--pid <PID>")]
    [Description("Only these processes (repeat the option for several)")]
    public long[] Pid { get; init; } = [];

    /// <summary>The --pid filter, or null for every process.</summary>
    public ISet<long>? Pids => Pid.Length == 0 ? null : Pid.ToHashSet();
}

/// <summary>Runs one Windows plugin: open, locate the kernel and its symbols, render the rows.</summary>
internal abstract class WindowsPluginCommand<TSettings> : Command<TSettings> where TSettings : WindowsPluginSettings
{
    protected abstract IReport Run(WindowsKernel kernel, TSettings settings, CancellationToken cancellationToken);

    public override int Execute(CommandContext context, TSettings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        WindowsKernel kernel = WindowsKernel.Open(memory, SymbolStore.WithUserCache(settings.Symbols, SymbolServerOption.Parse(settings.SymbolServer)), cancellationToken);
        ReportWriter.Write(Run(kernel, settings, cancellationToken), settings.OutputFormat, Console.Out);
        return (int)ExitCode.Ok;
    }
}

/// <summary>A Windows plugin with the common settings only.</summary>
internal abstract class WindowsPluginCommand : WindowsPluginCommand<WindowsPluginSettings>;

[Description("Windows processes on PsActiveProcessHead (offset, pid, ppid, image name, create time, DTB)")]
internal sealed class WindowsPsListCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsProcesses.PsList(kernel, ct);
}

[Description("Windows processes under their parents, with suspicious-parent rules (Office/browser starting a shell, svchost/lsass parents, a second lsass)")]
internal sealed class WindowsPsTreeCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsProcessTree.PsTree(kernel, ct);
}

[Description("Windows processes found by scanning physical memory for process pool allocations ('Proc'), with OnList against PsActiveProcessHead")]
internal sealed class WindowsPsScanCommand : WindowsPluginCommand
{
    protected override IReport Run(WindowsKernel kernel, WindowsPluginSettings settings, CancellationToken ct) => WindowsPoolScanner.PsScan(kernel, ct);
}
