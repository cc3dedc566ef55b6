using CloudMem.Engine.Core;
using System.Buffers.Binary;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>
/// A Windows x64 kernel located in a capture from the image alone: the kernel PE image (physical, by its RSDS record),
/// its ISF from a <see cref="SymbolStore"/>, the kernel page tables (a PML4 page with a self-referencing entry that maps
/// the kernel image) and from them the kernel's virtual base.
/// </summary>
/// <remarks>Immutable after <see cref="Open"/>; reads go through <see cref="Kernel"/> and never throw.</remarks>
public sealed partial class WindowsKernel
{
    private const int PageSize = 0x1000;
    private const ulong Present = 1, Write = 2, UserBit = 4, LargePage = 0x80;
    private const ulong AddressMask = 0x000FFFFFFFFFF000;

    /// <summary>Cap on page-table pages read while validating one DTB candidate (bounds the cost on garbage).</summary>
    public const int MaxTablePagesPerCandidate = 4096;

    /// <summary>Cap on DTB candidates validated before giving up.</summary>
    public const int MaxDtbCandidates = 256;

    private WindowsKernel(IPhysicalMemory physical, PeImageCandidate image, TypeModel types, string symbolPath,
        ulong dtb, int selfRefIndex, ulong kernelBase, string dtbSource = "self-referencing PML4 scan")
    {
        DtbSource = dtbSource;
        Physical = physical;
        Image = image;
        Types = types;
        SymbolPath = symbolPath;
        Dtb = dtb;
        SelfRefIndex = selfRefIndex;
        KernelBase = kernelBase;
        Kernel = new AddressSpace(physical, dtb);
    }

    /// <summary>The capture.</summary>
    public IPhysicalMemory Physical { get; }

    /// <summary>The kernel image found in physical memory (PDB name, GUID, age, physical base).</summary>
    public PeImageCandidate Image { get; }

    /// <summary>Layouts and symbol RVAs from the kernel's ISF.</summary>
    public TypeModel Types { get; }

    /// <summary>The ISF file loaded.</summary>
    public string SymbolPath { get; }

    /// <summary>Physical address of the kernel PML4 (the DTB used for kernel reads).</summary>
    public ulong Dtb { get; }

    /// <summary>Index of the PML4's self-referencing entry.</summary>
    public int SelfRefIndex { get; }

    /// <summary>Virtual address of the kernel image (its DOS header).</summary>
    public ulong KernelBase { get; }

    /// <summary>How <see cref="Dtb"/> was found and whether System's own DirectoryTableBase confirmed it.</summary>
    public string DtbSource { get; }

    /// <summary>The kernel address space.</summary>
    public AddressSpace Kernel { get; }

    /// <summary>The virtual address of a kernel symbol (ISF addresses of Windows kernels are RVAs).</summary>
    public bool TryGetSymbol(string name, out ulong address)
    {
        bool found = Types.Symbols.TryGetValue(name, out ulong rva);
        address = found ? KernelBase + rva : 0;
        return found;
    }

    /// <summary>
    /// Every process's PML4 has a self-reference and maps the kernel, so the first page the scan finds may belong to any
    /// process. The kernel's own page tables are System's (pid 4) _KPROCESS.DirectoryTableBase: read the process list
    /// through the candidate (the kernel half is shared, so any candidate can read it) and switch to System's DTB when it
    /// differs and is itself a self-referencing PML4 that maps the kernel image.
    /// </summary>
    private static WindowsKernel ConfirmWithSystem(WindowsKernel kernel, CancellationToken cancellationToken)
    {
        (List<WindowsProcess> processes, _) = WindowsProcesses.List(kernel, cancellationToken);
        WindowsProcess? system = processes.FirstOrDefault(p => p.Pid == 4);
        if (system is null)
        {
            return kernel.WithDtb(kernel.Dtb, kernel.SelfRefIndex, $"{kernel.DtbSource}; not confirmed: no System process (pid 4) on PsActiveProcessHead");
        }
        ulong systemDtb = system.Dtb & AddressMask;
        if (systemDtb == kernel.Dtb)
        {
            return kernel.WithDtb(kernel.Dtb, kernel.SelfRefIndex, $"{kernel.DtbSource}, confirmed: System's DirectoryTableBase");
        }
        byte[] page = new byte[PageSize];
        if (kernel.Physical.Read(systemDtb, page) == PageSize)
        {
            for (int i = 256; i < 512; i++)
            {
                ulong entry = Entry(page, i);
                if ((entry & AddressMask) == systemDtb && (entry & (Present | Write | UserBit | LargePage)) == (Present | Write)
                    && TryFindMapping(kernel.Physical, page, i, kernel.Image.PhysicalAddress, out ulong va) && va == kernel.KernelBase)
                {
                    return kernel.WithDtb(systemDtb, i, $"System's DirectoryTableBase (the scan found process page tables at 0x{kernel.Dtb:X} first)");
                }
            }
        }
        return kernel.WithDtb(kernel.Dtb, kernel.SelfRefIndex,
            $"{kernel.DtbSource}; System's DirectoryTableBase 0x{systemDtb:X} is not a PML4 mapping the kernel");
    }

    private WindowsKernel WithDtb(ulong dtb, int selfRef, string source)
        => new(Physical, Image, Types, SymbolPath, dtb, selfRef, KernelBase, source) { DiscoveryPath = DiscoveryPath, DiscoveryMilliseconds = DiscoveryMilliseconds };

    /// <summary>
    /// Scans physical pages for a PML4 with a present, writable, supervisor entry in the upper half pointing at the page
    /// itself, and whose kernel half maps <paramref name="kernelPhysical"/>; returns the first such page, the
    /// self-reference index and the kernel virtual address. On failure the last value is -1 (no self-referencing page)
    /// or -(candidates + 1).
    /// </summary>
    public static (ulong Dtb, int SelfRefIndex, ulong KernelBase, int Candidates) FindDtb(
        IPhysicalMemory physical, ulong kernelPhysical, CancellationToken cancellationToken = default)
    {
        byte[] page = new byte[PageSize];
        int candidates = 0;
        foreach (PhysicalRun run in physical.Runs)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (run.Storage == RunStorage.Zero)
            {
                continue;
            }
            ulong first = (run.PhysicalAddress + PageSize - 1) & ~(ulong)(PageSize - 1);
            for (ulong pa = first; pa + PageSize <= run.End && pa >= first; pa += PageSize)
            {
                if (((pa >> 12) & 0x3FFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
                if (physical.Read(pa, page) != PageSize)
                {
                    continue;
                }
                for (int i = 256; i < 512; i++)
                {
                    ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 8));
                    if ((entry & AddressMask) != pa || (entry & (Present | Write | UserBit | LargePage)) != (Present | Write))
                    {
                        continue;
                    }
                    if (++candidates > MaxDtbCandidates)
                    {
                        return (0, 0, 0, -candidates);
                    }
                    if (TryFindMapping(physical, page, i, kernelPhysical, out ulong va))
                    {
                        return (pa, i, va, candidates);
                    }
                    break;
                }
            }
        }
        return (0, 0, 0, candidates == 0 ? -1 : -(candidates + 1));
    }

    /// <summary>Walks the kernel half of a PML4 (already read) for a mapping of <paramref name="target"/> (4 KiB, 2 MiB or 1 GiB).</summary>
    private static bool TryFindMapping(IPhysicalMemory physical, byte[] pml4, int selfRef, ulong target, out ulong va)
    {
        va = 0;
        int budget = MaxTablePagesPerCandidate;
        byte[] pdpt = new byte[PageSize], pd = new byte[PageSize], pt = new byte[PageSize];
        for (int i4 = 256; i4 < 512; i4++)
        {
            ulong e4 = Entry(pml4, i4);
            if (i4 == selfRef || (e4 & Present) == 0 || (e4 & LargePage) != 0 || --budget < 0 || physical.Read(e4 & AddressMask, pdpt) != PageSize)
            {
                continue;
            }
            ulong va4 = 0xFFFF000000000000UL | ((ulong)i4 << 39);
            for (int i3 = 0; i3 < 512; i3++)
            {
                ulong e3 = Entry(pdpt, i3);
                if ((e3 & Present) == 0)
                {
                    continue;
                }
                ulong va3 = va4 | ((ulong)i3 << 30);
                if ((e3 & LargePage) != 0)
                {
                    ulong frame = e3 & AddressMask & ~0x3FFFFFFFUL;
                    if (target >= frame && target - frame < 0x40000000)
                    {
                        va = va3 + (target - frame);
                        return true;
                    }
                    continue;
                }
                if (--budget < 0 || physical.Read(e3 & AddressMask, pd) != PageSize)
                {
                    continue;
                }
                for (int i2 = 0; i2 < 512; i2++)
                {
                    ulong e2 = Entry(pd, i2);
                    if ((e2 & Present) == 0)
                    {
                        continue;
                    }
                    ulong va2 = va3 | ((ulong)i2 << 21);
                    if ((e2 & LargePage) != 0)
                    {
                        ulong frame = e2 & AddressMask & ~0x1FFFFFUL;
                        if (target >= frame && target - frame < 0x200000)
                        {
                            va = va2 + (target - frame);
                            return true;
                        }
                        continue;
                    }
                    if (--budget < 0 || physical.Read(e2 & AddressMask, pt) != PageSize)
                    {
                        continue;
                    }
                    for (int i1 = 0; i1 < 512; i1++)
                    {
                        ulong e1 = Entry(pt, i1);
                        if ((e1 & Present) != 0 && (e1 & AddressMask) == (target & AddressMask))
                        {
                            va = (va2 | ((ulong)i1 << 12)) + (target & (PageSize - 1));
                            return true;
                        }
                    }
                }
            }
        }
        return false;
    }

    private static ulong Entry(byte[] table, int index) => BinaryPrimitives.ReadUInt64LittleEndian(table.AsSpan(index * 8));
}
