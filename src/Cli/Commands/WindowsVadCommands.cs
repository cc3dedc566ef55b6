using System.ComponentModel;
using System.Globalization;
using CloudMem.Engine.Output;
using CloudMem.Engine.Windows;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of windows.procdump and windows.dlldump.</summary>
internal sealed class WindowsDumpSettings : WindowsProcessPluginSettings
{
    [CommandOption("--base <ADDRESS>")]
    [Description("windows.dlldump: only the DLL at this base (hex with 0x, or decimal)")]
    public string? Base { get; init; }

    [CommandOption("--out <DIR>")]
    [Description("Existing directory to write the files into (required; existing files are never overwritten)")]
    public string? Out { get; init; }

    /// <summary>--base as a number.</summary>
    public ulong? BaseAddress => Base is null ? null
        : Base.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? ulong.Parse(Base.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)
        : ulong.Parse(Base, CultureInfo.InvariantCulture);

    public override ValidationResult Validate()
    {
        ValidationResult common = base.Validate();
        if (!common.Successful)
        {
            return common;
        }
        if (string.IsNullOrEmpty(Out))
        {
            return ValidationResult.Error("--out DIR is required");
        }
        if (Base is not null && !(Base.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? ulong.TryParse(Base.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _)
                : ulong.TryParse(Base, CultureInfo.InvariantCulture, out _)))
        {
            return ValidationResult.Error($"--base '{Base}' is not an address (0x7ffb00000000 or decimal)");
        }
        return ValidationResult.Success();
    }
}

[Description("Windows process memory ranges from the VAD tree (node, range, pool tag, protection, type, commit, mapped file)")]
internal sealed class WindowsVadInfoCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsVadPlugins.VadInfo(kernel, settings.Pids, ct);
}

[Description("PE images in process memory (image VADs and MZ headers) against the three PEB loader lists: a mapped DLL on no list is hidden")]
internal sealed class WindowsLdrModulesCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsVadPlugins.LdrModules(kernel, settings.Pids, ct);
}

[Description("Executable process memory that is not a mapped image and holds code or a PE header (injection), with hexdump and disassembly")]
internal sealed class WindowsMalfindCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => new WindowsMalfindReport(WindowsVadPlugins.Malfind(kernel, settings.Pids, ct));
}

[Description("Hollowed processes: the PEB image base has no VAD, a VAD that is not an image, an image of another file, or differs from the section base")]
internal sealed class WindowsHollowFindCommand : WindowsPluginCommand<WindowsProcessPluginSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsProcessPluginSettings settings, CancellationToken ct) => WindowsVadPlugins.HollowFind(kernel, settings.Pids, ct);
}

[Description("Rebuilds process executables from memory as PE files (pid.PID.BASE.exe; sections at their raw offsets, missing pages as zeros; never overwrites)")]
internal sealed class WindowsProcDumpCommand : WindowsPluginCommand<WindowsDumpSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsDumpSettings settings, CancellationToken ct) => WindowsPeDump.ProcDump(kernel, settings.Out!, settings.Pids, ct: ct);
}

[Description("Rebuilds a process's DLLs from memory as PE files (pid.PID.BASE.dll; --base for one; never overwrites)")]
internal sealed class WindowsDllDumpCommand : WindowsPluginCommand<WindowsDumpSettings>
{
    protected override IReport Run(WindowsKernel kernel, WindowsDumpSettings settings, CancellationToken ct) => WindowsPeDump.DllDump(kernel, settings.Out!, settings.Pids, settings.BaseAddress, ct: ct);
}
