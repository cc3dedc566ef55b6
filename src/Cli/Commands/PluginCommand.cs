using System.ComponentModel;
using System.Globalization;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings every analysis plugin has: the capture, the output format, and the plugin inputs.</summary>
internal abstract class PluginSettings : CaptureSettings
{
    [CommandOption("--pid <PID>")]
    [Description("Only these processes (repeat the option for several); for plugins that work per process")]
    public long[] Pid { get; init; } = [];

    [CommandOption("--out <DIR>")]
    [Description("Existing directory for the files a dump plugin writes (existing files are never overwritten)")]
    public string? Out { get; init; }

    [CommandOption("--reveal")]
    [Description("Show found secrets in full instead of a redacted preview (plugins that find secrets)")]
    public bool Reveal { get; init; }

    [CommandOption("--yara <FILE|DIR>")]
    [Description("YARA rules: a rule file, or a directory of .yar/.yara files (the *.yarascan plugins; needs Debian's libyara9)")]
    public string? Yara { get; init; }

    [CommandOption("--base <ADDRESS>")]
    [Description("Only the object at this address (hex with 0x, or decimal); windows.dlldump, the hive of windows.registry.*, the inode of linux.pagecache.extract")]
    public string? Base { get; init; }

    [CommandOption("--no-cache")]
    [Description("Neither read nor write the profile cache (parsed symbol files, a Linux kernel build's kallsyms and BTF; see `cloudmem cache list`)")]
    public bool NoCache { get; init; }

    /// <summary>The profile cache, or null with --no-cache (or when no cache directory is known).</summary>
    protected ProfileCache? Cache => NoCache ? null : ProfileCache.Default();

    /// <summary>The symbol inputs as the engine takes them.</summary>
    public abstract SymbolOptions Symbols { get; }

    /// <summary>The plugin inputs as the engine takes them.</summary>
    public virtual PluginArguments Arguments => new()
    {
        Pids = Pid.Length == 0 ? null : Pid.ToHashSet(),
        OutputDirectory = Out,
        RevealSecrets = Reveal,
        YaraRules = Yara,
        BaseAddress = Base is null ? null : ParseAddress(Base),
    };

    public override ValidationResult Validate()
        => (Base is not null && ParseAddress(Base) is null ? ValidationResult.Error($"--base '{Base}' is not an address (0x7ffb00000000 or decimal)") : null)
            ?? base.Validate();

    private static ulong? ParseAddress(string text)
        => text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong hex) ? hex : null
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong dec) ? dec : null;
}

/// <summary>Settings of the Linux plugins: the optional symbol inputs (the kernel is found from the image alone).</summary>
internal sealed class LinuxPluginSettings : PluginSettings
{
    [CommandOption("--isf <FILE>")]
    [Description("Optional: a Volatility ISF (.json or .json.xz) of the kernel, used instead of the BTF found in memory")]
    public string? Isf { get; init; }

    [CommandOption("--system-map <FILE>")]
    [Description("Optional: the kernel's System.map, used only when kallsyms cannot be found in memory")]
    public string? SystemMap { get; init; }

    public override SymbolOptions Symbols => new([], IsfPath: Isf, SystemMapPath: SystemMap, Cache: Cache);
}

/// <summary>Settings of the Windows plugins.</summary>
internal class WindowsPluginSettings : PluginSettings
{
    [CommandOption("--symbols <DIR>")]
    [Description("A symbol directory holding windows/<pdb>/<GUID>-<age>.json.xz or <pdb>/<GUID><age hex>/<pdb> (repeatable; the per-user cache ${XDG_CACHE_HOME:-~/.cache}/cloudmem/symbols is searched after these)")]
    public string[] SymbolDirectories { get; init; } = [];

    [CommandOption(SymbolServerOption.Template)]
    [Description(SymbolServerOption.Description)]
    public string? SymbolServer { get; init; }

    [CommandOption("--key <PATH>")]
    [Description("A registry key path relative to each hive's root, e.g. ControlSet001\\Services (windows.registry.printkey)")]
    public string? Key { get; init; }

    public override SymbolOptions Symbols => new(SymbolDirectories, SymbolServerOption.Parse(SymbolServer), Cache: Cache);

    public override PluginArguments Arguments => base.Arguments with { KeyPath = Key };

    public override ValidationResult Validate() => SymbolServerOption.Validate(SymbolServer) ?? base.Validate();
}

/// <summary>
/// Runs any registered plugin: the command's name is the plugin's name. Checks the inputs against what the plugin
/// takes, opens the capture, runs the plugin and writes its report (notes to stderr for CSV).
/// </summary>
internal sealed class PluginCommand<TSettings> : Command<TSettings> where TSettings : PluginSettings
{
    public override int Execute(CommandContext context, TSettings settings, CancellationToken cancellationToken)
    {
        IPlugin plugin = PluginRegistry.Get(context.Name);
        PluginArguments arguments = settings.Arguments;
        if (PluginRegistry.Validate(plugin.Info, arguments) is { } problem)
        {
            throw new UsageException(problem, plugin.Info.Name);
        }
        if (arguments.OutputDirectory is { } directory && !Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"output directory '{directory}' does not exist (create it first)");
        }
        ILogger logger = StderrLogger.FromEnvironment();
        var phases = PhaseTimer.Start(logger);
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        phases.Mark("open capture");
        using var progress = ProgressDisplay.ForTerminal();
        var pluginContext = new PluginContext(memory, settings.Image, settings.Symbols, TimingProgress.Wrap(progress, logger), logger);
        IReport report = plugin.Run(pluginContext, arguments, cancellationToken);
        progress?.Dispose();
        phases.Mark("run plugin");
        ReportOutput.Write(report, settings.OutputFormat, Console.Error);
        phases.Mark("write output");
        return (int)ExitCode.Ok;
    }
}

/// <summary>A usage error found after parsing (an input the command does not take); shown as one "usage:" line.</summary>
internal sealed class UsageException(string message, string command) : Exception(message)
{
    /// <summary>The command whose help explains the usage.</summary>
    public string Command { get; } = command;
}
