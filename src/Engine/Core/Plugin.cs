using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Core;

/// <summary>The operating system a plugin analyses.</summary>
public enum TargetOs
{
    /// <summary>Any capture (format-level plugins such as <c>info</c>).</summary>
    Any,
    /// <summary>A Linux kernel, located from the image alone (symbol files optional).</summary>
    Linux,
    /// <summary>A Windows x64 kernel; needs the kernel's symbols (ISF or PDB).</summary>
    Windows,
}

/// <summary>The inputs a plugin takes beyond the capture. The command line refuses an input the plugin does not take.</summary>
[Flags]
public enum PluginInputs
{
    /// <summary>Only the capture.</summary>
    None = 0,
    /// <summary><c>--pid</c>: only these processes (every row's process is one of them).</summary>
    ProcessFilter = 1,
    /// <summary><c>--pid</c> is required and names exactly one process.</summary>
    SingleProcess = 2,
    /// <summary><c>--out DIR</c> is required: the plugin writes files there (never overwriting).</summary>
    OutputDirectory = 4,
    /// <summary><c>--base ADDRESS</c>: only the object at this address.</summary>
    BaseAddress = 8,
    /// <summary><c>--reveal</c>: show found secrets in full instead of a redacted preview.</summary>
    RevealSecrets = 16,

    /// <summary><c>--key PATH</c>: a registry key path (relative to a hive's root).</summary>
    KeyPath = 32,

    /// <summary><c>--yara FILE|DIR</c> is required: YARA rules (a file, or every .yar/.yara file of a directory).</summary>
    YaraRules = 64,
}

/// <summary>What a plugin is: its name as Volatility spells it, a one-line description, its OS and its inputs.</summary>
/// <param name="Name">The command name, e.g. <c>linux.pslist</c>.</param>
/// <param name="Description">One line for <c>--help</c>.</param>
/// <param name="Os">The operating system it needs; <see cref="TargetOs.Windows"/> also needs kernel symbols.</param>
/// <param name="Inputs">The inputs it takes.</param>
public sealed record PluginInfo(string Name, string Description, TargetOs Os, PluginInputs Inputs = PluginInputs.None)
{
    /// <summary>It needs the OS kernel located in the capture.</summary>
    public bool NeedsKernel => Os != TargetOs.Any;

    /// <summary>It needs a symbol table for the kernel (Windows: always; Linux: found in the image).</summary>
    public bool NeedsSymbols => Os == TargetOs.Windows;

    /// <summary>It takes <c>--pid</c>.</summary>
    public bool TakesPids => (Inputs & (PluginInputs.ProcessFilter | PluginInputs.SingleProcess)) != 0;
}

/// <summary>The inputs of one plugin run (checked against <see cref="PluginInfo.Inputs"/> by <see cref="PluginRegistry.Validate"/>).</summary>
public sealed record PluginArguments
{
    /// <summary>Only these processes, or null for all.</summary>
    public IReadOnlySet<long>? Pids { get; init; }

    /// <summary>Directory to write files into (must exist).</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Only the object at this address.</summary>
    public ulong? BaseAddress { get; init; }

    /// <summary>Show found secrets in full (only for plugins that declare <see cref="PluginInputs.RevealSecrets"/>).</summary>
    public bool RevealSecrets { get; init; }

    /// <summary>A registry key path, or null.</summary>
    public string? KeyPath { get; init; }

    /// <summary>A YARA rule file or directory, or null.</summary>
    public string? YaraRules { get; init; }

    /// <summary>No inputs.</summary>
    public static PluginArguments None { get; } = new();

    /// <summary>The pid filter as a set of <see cref="int"/> (Linux pids), or null.</summary>
    public ISet<int>? IntPids => Pids is null ? null : Pids.Where(p => p is >= int.MinValue and <= int.MaxValue).Select(p => (int)p).ToHashSet();

    /// <summary>The rows of <paramref name="report"/> whose process is one of <see cref="Pids"/> (all rows without a filter).</summary>
    public RowsReport<T> OnlyPids<T>(RowsReport<T> report, Func<T, long> pid) where T : notnull
    {
        ArgumentNullException.ThrowIfNull(report);
        IReadOnlySet<long>? pids = Pids;
        return pids is null ? report : report.Where(r => pids.Contains(pid(r)));
    }

    /// <summary>The pid filter as a mutable set (the Windows walkers' parameter type), or null.</summary>
    public ISet<long>? LongPids => Pids?.ToHashSet();
}

/// <summary>A registered analysis plugin.</summary>
public interface IPlugin
{
    /// <summary>What it is.</summary>
    PluginInfo Info { get; }

    /// <summary>Runs it. Unreadable memory becomes notes and partial rows, never an exception; a missing kernel or
    /// symbol table is a <see cref="KernelNotFoundException"/>.</summary>
    IReport Run(PluginContext context, PluginArguments arguments, CancellationToken cancellationToken);
}

/// <summary>A plugin made of its description and a function.</summary>
public sealed class Plugin(PluginInfo info, Func<PluginContext, PluginArguments, CancellationToken, IReport> run) : IPlugin
{
    /// <inheritdoc />
    public PluginInfo Info { get; } = info;

    /// <inheritdoc />
    public IReport Run(PluginContext context, PluginArguments arguments, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        return run(context, arguments ?? PluginArguments.None, cancellationToken);
    }
}
