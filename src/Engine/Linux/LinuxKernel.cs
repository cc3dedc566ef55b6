using Microsoft.Extensions.Logging;
using CloudMem.Engine.Core;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>
/// A Linux x86-64 kernel located in a capture from the image alone: banner, kallsyms, KASLR slide, physical load
/// address, the kernel page tables (init_top_pgt) and the direct-map base.
/// </summary>
public sealed class LinuxKernel
{
    /// <summary>Link-time start of the kernel text mapping (__START_KERNEL_map).</summary>
    public const ulong StartKernelMap = 0xFFFFFFFF80000000;

    /// <summary>Link-time address of _text for x86-64 kernels built with the default CONFIG_PHYSICAL_START.</summary>
    public const ulong DefaultTextAddress = 0xFFFFFFFF81000000;

    private LinuxKernel(IPhysicalMemory physical, KernelBanner banner, IKernelSymbols symbols, long physBase, ulong dtb, AddressSpace kernel, List<string> steps)
    {
        Physical = physical;
        Banner = banner;
        Symbols = symbols;
        PhysBase = physBase;
        DirectoryTableBase = dtb;
        Kernel = kernel;
        Steps = steps;
    }

    /// <summary>The capture.</summary>
    public IPhysicalMemory Physical { get; }

    /// <summary>The kernel's linux_banner.</summary>
    public KernelBanner Banner { get; }

    /// <summary>Kernel symbols: kallsyms decoded from memory, or a given symbol file with the slide found.</summary>
    public IKernelSymbols Symbols { get; }

    /// <summary>phys_base: physical load address minus link address (negative under physical KASLR).</summary>
    public long PhysBase { get; }

    /// <summary>KASLR virtual slide: run-time _text minus its link-time address.</summary>
    public ulong VirtualSlide => Symbols is SlidSymbols slid ? slid.Slide : Symbols.TryGetAddress("_text", out ulong text) ? text - DefaultTextAddress : 0;

    /// <summary>Physical address of init_top_pgt (the kernel's root page table).</summary>
    public ulong DirectoryTableBase { get; }

    /// <summary>The kernel's virtual address space.</summary>
    public AddressSpace Kernel { get; }

    /// <summary>page_offset_base (the direct map of all physical memory), read from the kernel variable.</summary>
    public ulong PageOffsetBase => Symbols.TryGetAddress("page_offset_base", out ulong va) && Kernel.TryReadUInt64(va, out ulong value) ? value : 0xFFFF888000000000;

    /// <summary>How each value was found, in order.</summary>
    public IReadOnlyList<string> Steps { get; }

    /// <summary>Kernel-image virtual address to physical.</summary>
    public ulong KernelImageToPhysical(ulong va) => (ulong)((long)(va - StartKernelMap) + PhysBase);

    /// <summary>Direct-map virtual address to physical.</summary>
    public ulong DirectMapToPhysical(ulong va) => va - PageOffsetBase;

    /// <summary>Locates the kernel. Throws <see cref="KernelNotFoundException"/> with what was tried.</summary>
    /// <param name="physical">The capture.</param>
    /// <param name="linkTimeSymbols">Optional symbols at link-time addresses (System.map or ISF), used when kallsyms cannot be found.</param>
    /// <param name="symbolSource">Name of those symbols' file.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <param name="logger">Where diagnostics about the search go; null for none.</param>
    public static LinuxKernel Locate(IPhysicalMemory physical, IReadOnlyDictionary<string, ulong>? linkTimeSymbols = null, string? symbolSource = null,
        CancellationToken cancellationToken = default, ILogger? logger = null)
        => Locate(physical, linkTimeSymbols, symbolSource, cached: null, cancellationToken, logger);

    /// <summary>As the public <c>Locate</c>; <paramref name="cached"/> may give this build's kallsyms from the profile
    /// cache once the banner is found (null: search memory). Cached tables go through the same page-table check, and
    /// the search runs when they fail it.</summary>
    internal static LinuxKernel Locate(IPhysicalMemory physical, IReadOnlyDictionary<string, ulong>? linkTimeSymbols, string? symbolSource,
        Func<KernelBanner, Kallsyms?>? cached, CancellationToken cancellationToken, ILogger? logger,
        IReadOnlyList<(ulong Address, string Text)>? hints = null)
    {
        var steps = new List<string>();
        if (cached is not null && hints is not null && FromHints(physical, hints, cached, steps) is { } hinted)
        {
            logger?.LogDebug("timing: kernel found where an earlier command found it");
            return hinted;
        }
        if (linkTimeSymbols is not null && BannerAtLoadAddress(physical, linkTimeSymbols, steps, cancellationToken) is { } placed)
        {
            // Symbols from a file tell where the banner must be: no scan of physical memory, no kallsyms search (what
            // keeps a remote capture's fetches to the page tables and the structures a plugin walks). Symbols of another
            // build can still land on a banner by chance: then the page tables disagree and the search below runs.
            try
            {
                return FromLinkTimeSymbols(physical, placed, linkTimeSymbols, symbolSource ?? "symbol file", steps);
            }
            catch (KernelNotFoundException e)
            {
                steps.Add($"symbol-file placement rejected: {e.Message}");
            }
        }
        KernelBanner banner = BannerScanner.FindLinuxBanner(physical, cancellationToken)
            ?? throw new KernelNotFoundException("no Linux kernel banner (\"Linux version ...\") in physical memory: not a Linux capture, or the kernel image was not captured");
        steps.Add($"banner at physical 0x{banner.PhysicalAddress:X}");
        logger?.LogDebug("timing: banner found");
        if (cached?.Invoke(banner) is { } fromCache)
        {
            try
            {
                var cachedSteps = new List<string>(steps) { $"kallsyms: {fromCache.Symbols.Count} symbols from the profile cache (token table at physical 0x{fromCache.TokenTablePhysicalAddress:X} as recorded), relative base 0x{fromCache.RelativeBase:X}" };
                return FromSymbols(physical, banner, fromCache, cachedSteps);
            }
            catch (KernelNotFoundException e)
            {
                steps.Add($"profile cache's kallsyms rejected: {e.Message}");
            }
        }
        Kallsyms? kallsyms = Kallsyms.Find(physical, out string why, KernelImageWindow(banner), cancellationToken);
        if (kallsyms is not null)
        {
            steps.Add($"kallsyms: {kallsyms.Symbols.Count} symbols, token table at physical 0x{kallsyms.TokenTablePhysicalAddress:X}, relative base 0x{kallsyms.RelativeBase:X}");
            return FromSymbols(physical, banner, kallsyms, steps);
        }
        steps.Add($"kallsyms not found: {why}");
        if (linkTimeSymbols is null)
        {
            throw new KernelNotFoundException($"kallsyms not found in memory ({why}); supply the kernel's symbols with --isf FILE.json.xz or --system-map System.map");
        }
        return FromLinkTimeSymbols(physical, banner, linkTimeSymbols, symbolSource ?? "symbol file", steps);
    }

    /// <summary>
    /// The kernel at a place an earlier command found it (<see cref="LinuxBannerHints"/>): accepted only when a banner
    /// with the recorded text is there, the profile cache's kallsyms for it match this capture and the page tables map
    /// linux_banner to that address; null otherwise (the caller scans).
    /// </summary>
    private static LinuxKernel? FromHints(IPhysicalMemory physical, IReadOnlyList<(ulong Address, string Text)> hints,
        Func<KernelBanner, Kallsyms?> cached, List<string> steps)
    {
        foreach ((ulong address, string text) in hints)
        {
            if (address >= physical.MaxAddress || BannerAt(physical, address) is not { } banner || banner.Text != text
                || cached(banner) is not { } kallsyms)
            {
                continue;
            }
            try
            {
                return FromSymbols(physical, banner, kallsyms, new List<string>(steps)
                {
                    $"banner at physical 0x{address:X}, where an earlier command found this kernel (profile-cache hint; no scan)",
                    $"kallsyms: {kallsyms.Symbols.Count} symbols from the profile cache (token table at physical 0x{kallsyms.TokenTablePhysicalAddress:X} as recorded), relative base 0x{kallsyms.RelativeBase:X}",
                });
            }
            catch (KernelNotFoundException)
            {
                // not this capture's kernel after all: try the next hint, then scan
            }
        }
        return null;
    }

    /// <summary>
    /// Where kallsyms and .BTF usually are: read-only data of the kernel image, after linux_banner (within a few MiB
    /// on the kernels we have seen). Searched first; the whole capture is searched when nothing validates there.
    /// </summary>
    public static (ulong Start, ulong End) KernelImageWindow(KernelBanner banner)
        => (banner.PhysicalAddress, banner.PhysicalAddress + (32UL << 20));

    private static LinuxKernel FromSymbols(IPhysicalMemory physical, KernelBanner banner, IKernelSymbols symbols, List<string> steps)
    {
        if (!symbols.TryGetAddress("linux_banner", out ulong bannerVa))
        {
            throw new KernelNotFoundException($"{symbols.Source} has no linux_banner symbol; supply --system-map or --isf");
        }
        long physBase = (long)banner.PhysicalAddress - (long)(bannerVa - StartKernelMap);
        steps.Add($"phys_base {Hex.Signed(physBase)} from linux_banner 0x{bannerVa:X} at physical 0x{banner.PhysicalAddress:X}");
        if (!symbols.TryGetAddress("init_top_pgt", out ulong pgtVa) && !symbols.TryGetAddress("swapper_pg_dir", out pgtVa))
        {
            throw new KernelNotFoundException($"{symbols.Source} has neither init_top_pgt nor swapper_pg_dir: cannot find the kernel page tables");
        }
        ulong dtb = (ulong)((long)(pgtVa - StartKernelMap) + physBase);
        foreach (PagingMode mode in new[] { PagingMode.X64Level4, PagingMode.X64Level5 })
        {
            var space = new AddressSpace(physical, dtb, mode);
            if (space.TryTranslate(bannerVa, out Translation t, out _) && t.PhysicalAddress == banner.PhysicalAddress)
            {
                steps.Add($"kernel page tables: init_top_pgt at physical 0x{dtb:X}, {mode.Name}; linux_banner translates to its physical address");
                return new LinuxKernel(physical, banner, symbols, physBase, dtb, space, steps);
            }
        }
        throw new KernelNotFoundException($"init_top_pgt at physical 0x{dtb:X} does not map linux_banner to 0x{banner.PhysicalAddress:X}: the symbols do not fit this capture");
    }

    /// <summary>
    /// The banner found from link-time symbols without a scan: at the place VMCOREINFO's phys_base and KERNELOFFSET give
    /// (kdump), else at linux_banner's offset from _text past each 2 MiB boundary (the kernel is loaded at a
    /// CONFIG_PHYSICAL_ALIGN boundary), one small read per candidate. Null when the symbols lack those two or no
    /// candidate holds a well-formed banner.
    /// </summary>
    private static KernelBanner? BannerAtLoadAddress(IPhysicalMemory physical, IReadOnlyDictionary<string, ulong> symbols, List<string> steps, CancellationToken cancellationToken)
    {
        const ulong PhysicalAlign = 0x200000;
        if (!symbols.TryGetValue("linux_banner", out ulong bannerLink) || !symbols.TryGetValue("_text", out ulong textLink)
            || bannerLink < textLink || bannerLink - textLink > 0x10000000)
        {
            return null;
        }
        if (physical is ICaptureMetadata { Metadata.VmcoreInfo: { } info } && info.TryGetNumber("phys_base", out long physBase))
        {
            ulong offset = info.TryGetKernelOffset(out ulong kernelOffset) ? kernelOffset : 0;
            ulong at = unchecked(bannerLink + offset - StartKernelMap + (ulong)physBase);
            if (BannerAt(physical, at) is { } fromVmcoreinfo)
            {
                steps.Add($"banner at physical 0x{at:X} from VMCOREINFO phys_base and KERNELOFFSET");
                return fromVmcoreinfo;
            }
        }
        ulong inImage = bannerLink - textLink;
        for (ulong load = 0; load + inImage < physical.MaxAddress; load += PhysicalAlign)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (BannerAt(physical, load + inImage) is { } found)
            {
                steps.Add($"banner at physical 0x{found.PhysicalAddress:X}: linux_banner's offset 0x{inImage:X} from _text past the 2 MiB load boundary 0x{load:X}");
                return found;
            }
        }
        return null;
    }

    private static KernelBanner? BannerAt(IPhysicalMemory physical, ulong at)
    {
        Span<byte> text = stackalloc byte[512];
        int read = physical.Read(at, text);
        string? line = read >= 64 && text.StartsWith("Linux version "u8) ? BannerScanner.Validate(text[..read]) : null;
        return line is null ? null : new KernelBanner(line, at);
    }

    // With link-time symbols: the kernel page table's physical address does not depend on the virtual slide
    // (both it and linux_banner move together in physical memory), so find it first, then try every 2 MiB-aligned
    // slide (CONFIG_PHYSICAL_ALIGN) until linux_banner translates to where the banner was found.
    private static LinuxKernel FromLinkTimeSymbols(IPhysicalMemory physical, KernelBanner banner, IReadOnlyDictionary<string, ulong> symbols, string source, List<string> steps)
    {
        if (!symbols.TryGetValue("linux_banner", out ulong bannerLink)
            || !(symbols.TryGetValue("init_top_pgt", out ulong pgtLink) || symbols.TryGetValue("swapper_pg_dir", out pgtLink)))
        {
            throw new KernelNotFoundException($"{source} lacks linux_banner or init_top_pgt/swapper_pg_dir");
        }
        ulong dtb = banner.PhysicalAddress + (pgtLink - bannerLink);
        foreach (PagingMode mode in new[] { PagingMode.X64Level4, PagingMode.X64Level5 })
        {
            var space = new AddressSpace(physical, dtb, mode);
            for (ulong slide = 0; slide < 0x40000000; slide += 0x200000)
            {
                if (space.TryTranslate(bannerLink + slide, out Translation t, out _) && t.PhysicalAddress == banner.PhysicalAddress)
                {
                    var slid = new SlidSymbols(symbols, slide, source);
                    steps.Add($"{source}: KASLR slide 0x{slide:X} found by translating linux_banner through init_top_pgt at physical 0x{dtb:X}");
                    return FromSymbols(physical, banner, slid, steps);
                }
            }
        }
        throw new KernelNotFoundException($"{source} does not fit this capture: no KASLR slide maps linux_banner to physical 0x{banner.PhysicalAddress:X} (a different kernel build?)");
    }
}
