using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>Options for Linux analysis: optional symbol inputs (never required).</summary>
/// <param name="IsfPath">A Volatility ISF (.json or .json.xz) for the kernel: its types replace BTF, its symbols are
/// used when kallsyms cannot be found.</param>
/// <param name="SystemMapPath">A System.map for the kernel, used when kallsyms cannot be found.</param>
/// <param name="Logger">Where diagnostics go (which symbol source was used, what was skipped); null for none.</param>
/// <param name="Cache">The profile cache: this kernel build's kallsyms and BTF types (and a given ISF's types) are
/// read from it when present and intact, and stored in it after a search; null (the default) neither reads nor writes.</param>
public sealed record LinuxOptions(string? IsfPath = null, string? SystemMapPath = null, ILogger? Logger = null, ProfileCache? Cache = null);

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
        ProfileCache? cache = options.Cache;
        TypeModel? isf = options.IsfPath is null ? null
            : cache is null ? IsfLoader.Load(options.IsfPath) : cache.GetTypes(options.IsfPath, path => IsfLoader.Load(path));
        IReadOnlyDictionary<string, ulong>? linkTime = options.SystemMapPath is not null ? SlidSymbols.ParseSystemMap(options.SystemMapPath)
            : isf is { Symbols.Count: > 0 } ? isf.Symbols : null;
        LinuxProfileCache? profile = null;
        Func<KernelBanner, Kallsyms?>? cached = cache is null || isf is not null ? null : banner =>
        {
            profile = new LinuxProfileCache(cache, banner);
            return profile.TryLoad(physical) ? profile.Kallsyms : null;
        };
        LinuxBannerHints? hints = cached is null ? null : new LinuxBannerHints(cache!);
        IReadOnlyList<(ulong Address, string Text)>? known = hints?.Read();
        LinuxKernel kernel = LinuxKernel.Locate(physical, linkTime, options.SystemMapPath ?? options.IsfPath, cached, cancellationToken, logger, known);
        Mark("kernel located");
        if (isf is not null)
        {
            RefuseOtherKernel(isf, kernel, options.IsfPath!);
        }
        TypeModel types;
        if (isf is not null)
        {
            types = isf;
        }
        else if (profile?.Types is { } fromCache && ReferenceEquals(profile.Kallsyms, kernel.Symbols))
        {
            types = fromCache;
        }
        else if (TryFindBtf(physical, kernel, out ulong btfAt, out int btfLength, cancellationToken))
        {
            byte[] blob = new byte[btfLength];
            physical.Read(btfAt, blob);
            types = BtfLoader.Load(blob, LinuxProfileCache.BtfSource(btfAt));
            if (profile is not null && kernel.Symbols is Kallsyms kallsyms && kernel.Banner == profile.Banner)
            {
                profile.Save(physical, kallsyms, btfAt, blob, types);
            }
        }
        else
        {
            throw new KernelNotFoundException("no BTF type information in memory (kernel built without CONFIG_DEBUG_INFO_BTF?); supply the kernel's ISF with --isf FILE.json.xz");
        }
        if (hints is not null && kernel.Symbols is Kallsyms)
        {
            hints.Remember(kernel.Banner, known!);
        }
        Mark($"types loaded ({types.TypeCount})");
        return new LinuxContext(physical, kernel, types, LinuxProfile.Create(types));
    }

    /// <summary>
    /// An ISF made for another kernel build would give wrong offsets everywhere: refuse it. Its linux_banner text
    /// (dwarf2json's constant_data) must be the capture's banner; without that text, linux_banner's distance from
    /// _text must be the one in the capture's kallsyms.
    /// </summary>
    private static void RefuseOtherKernel(TypeModel isf, LinuxKernel kernel, string isfPath)
    {
        string file = Path.GetFileName(isfPath);
        string captured = kernel.Banner.Text.Trim();
        if (isf.KernelBanner is { } text)
        {
            if (text.Trim() != captured)
            {
                throw new KernelNotFoundException($"--isf {file} is for another kernel: its banner is \"{OneLine(text)}\", the capture's is \"{OneLine(captured)}\"");
            }
            return;
        }
        if (isf.Symbols.TryGetValue("linux_banner", out ulong isfBanner) && isf.Symbols.TryGetValue("_text", out ulong isfText)
            && kernel.Symbols.TryGetAddress("linux_banner", out ulong banner) && kernel.Symbols.TryGetAddress("_text", out ulong textStart)
            && isfBanner - isfText != banner - textStart)
        {
            throw new KernelNotFoundException($"--isf {file} is for another kernel: its linux_banner is at _text+0x{isfBanner - isfText:X}, "
                + $"{kernel.Symbols.Source} has it at _text+0x{banner - textStart:X} (the ISF carries no banner text; the capture's is \"{OneLine(captured)}\")");
        }
    }

    private static string OneLine(string text) => text.Trim().ReplaceLineEndings(" ");

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

    /// <summary>
    /// The entries (link addresses) of the kernel's circular list <paramref name="list"/> at <paramref name="head"/>,
    /// walked by <see cref="KernelLists.Circular"/> in the kernel half; a loop, a bad pointer or <paramref name="limit"/>
    /// ends the walk with a note naming the list (the entries before it are kept).
    /// </summary>
    internal IReadOnlyList<ulong> WalkList(ulong head, string list, string what, int limit, List<string> notes, CancellationToken ct, bool headIsEntry = false)
    {
        ListWalk walk = KernelLists.Circular(Kernel.Kernel, head, what, limit, KernelLists.IsKernelAddress, headIsEntry, cancellationToken: ct);
        if (walk.Note is not null)
        {
            notes.Add($"{list}: {walk.Note} (smeared or damaged memory?)");
        }
        return walk.Entries;
    }

    /// <summary>The address space of a process whose mm->pgd (a direct-map address) is <paramref name="pgd"/>.</summary>
    public AddressSpace ProcessSpace(ulong pgd) => new(Physical, Kernel.DirectMapToPhysical(pgd), Kernel.Kernel.Mode);
}
