using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>Options for Linux analysis: optional symbol inputs (never required).</summary>
/// <param name="IsfPath">A Volatility ISF (.json or .json.xz) for the kernel: its types replace BTF, its symbols are
/// used when kallsyms cannot be found.</param>
/// <param name="SystemMapPath">A System.map for the kernel, used when kallsyms cannot be found.</param>
public sealed record LinuxOptions(string? IsfPath = null, string? SystemMapPath = null, ILogger? Logger = null);

/// <summary>
/// Everything the Linux plugins share: the located kernel, the type model (BTF carved from the capture, or a given
/// ISF) and the resolved layouts.
/// </summary>
public sealed class LinuxContext
{
    private LinuxContext(IPhysicalMemory physical, LinuxKernel kernel, TypeModel types, LinuxProfile profile)
    {
        Physical = physical;
        Kernel = kernel;
        Types = types;
        Profile = profile;
    }

    /// <summary>The capture.</summary>
    public IPhysicalMemory Physical { get; }

    /// <summary>The kernel.</summary>
    public LinuxKernel Kernel { get; }

    /// <summary>The type model.</summary>
    public TypeModel Types { get; }

    /// <summary>Resolved layouts.</summary>
    public LinuxProfile Profile { get; }

    /// <summary>Locates the kernel and its types. Throws <see cref="KernelNotFoundException"/> with what was tried.</summary>
    public static LinuxContext Open(IPhysicalMemory physical, LinuxOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new LinuxOptions();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ILogger logger = options.Logger ?? NullLogger.Instance;
        void Mark(string phase) => logger.LogDebug("timing: {Phase} at {Milliseconds:0} ms", phase, clock.Elapsed.TotalMilliseconds);
        TypeModel? isf = options.IsfPath is null ? null : IsfLoader.Load(options.IsfPath);
        IReadOnlyDictionary<string, ulong>? linkTime = options.SystemMapPath is not null ? SlidSymbols.ParseSystemMap(options.SystemMapPath)
            : isf is { Symbols.Count: > 0 } ? isf.Symbols : null;
        LinuxKernel kernel = LinuxKernel.Locate(physical, linkTime, options.SystemMapPath ?? options.IsfPath, cancellationToken, logger);
        Mark("kernel located");
        TypeModel types;
        if (isf is not null)
        {
            types = isf;
        }
        else if (TryFindBtf(physical, kernel, out ulong btfAt, out int btfLength, cancellationToken))
        {
            byte[] blob = new byte[btfLength];
            physical.Read(btfAt, blob);
            types = BtfLoader.Load(blob, $"BTF in memory at physical 0x{btfAt:X}");
        }
        else
        {
            throw new KernelNotFoundException("no BTF type information in memory (kernel built without CONFIG_DEBUG_INFO_BTF?); supply the kernel's ISF with --isf FILE.json.xz");
        }
        Mark($"types loaded ({types.TypeCount})");
        return new LinuxContext(physical, kernel, types, LinuxProfile.Create(types));
    }

    // .BTF is part of the kernel image: look around the banner first, then everywhere.
    private static bool TryFindBtf(IPhysicalMemory physical, LinuxKernel kernel, out ulong at, out int length, CancellationToken ct)
    {
        (ulong start, ulong end) = LinuxKernel.KernelImageWindow(kernel.Banner);
        if (BtfLoader.TryFind(physical, start, end, out at, out length, ct) && length >= 1 << 20)
        {
            return true;
        }
        return BtfLoader.TryFind(physical, out at, out length, ct);
    }

    /// <summary>The address space of a process whose mm->pgd (a direct-map address) is <paramref name="pgd"/>.</summary>
    public AddressSpace ProcessSpace(ulong pgd) => new(Physical, Kernel.DirectMapToPhysical(pgd), Kernel.Kernel.Mode);
}
