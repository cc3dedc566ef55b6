using System.Diagnostics;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>What kernel discovery found: the kernel image (physical header, PDB), the DTB, its self-reference and the
/// kernel's virtual base, and which path found them.</summary>
/// <param name="Image">The kernel image.</param>
/// <param name="Dtb">The kernel page tables.</param>
/// <param name="SelfRefIndex">The PML4's self-referencing entry.</param>
/// <param name="KernelBase">Virtual address of the kernel's DOS header.</param>
/// <param name="Source">How the DTB was found (shown by windows.info as "DTB source").</param>
/// <param name="Confirmed">True when System's DirectoryTableBase was already checked (a cache record).</param>
public sealed record WindowsDiscovery(PeImageCandidate Image, ulong Dtb, int SelfRefIndex, ulong KernelBase, string Source, bool Confirmed = false);

public sealed partial class WindowsKernel
{
    /// <summary>How discovery went: "low stub", "profile cache" or "scan", and its time in milliseconds.</summary>
    public string DiscoveryPath { get; private init; } = "scan";

    /// <summary>Time spent locating the kernel (without loading its symbols), in milliseconds.</summary>
    public double DiscoveryMilliseconds { get; private init; }

    /// <summary>
    /// Locates the kernel, its symbol table and its page tables. In order: a discovery record of this capture in the
    /// store's profile cache (used only when the kernel PE header at the recorded base, read through the recorded DTB,
    /// still carries the recorded PDB GUID and age); the x64 low stub in the first megabyte (CR3, then the kernel
    /// image below its entry hint); and as the fallback a scan of every physical page for the kernel's PE header and
    /// a self-referencing PML4 that maps it. A record is (re)written whenever discovery had to run.
    /// </summary>
    /// <exception cref="KernelNotFoundException">With one line saying what was not found.</exception>
    public static WindowsKernel Open(IPhysicalMemory physical, SymbolStore symbols, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(physical);
        ArgumentNullException.ThrowIfNull(symbols);
        long started = Stopwatch.GetTimestamp();
        byte[] low = ReadLowMegabyte(physical);
        string? identity = symbols.Cache is null ? null : CaptureIdentity(physical, low);
        WindowsDiscovery? found = identity is null ? null : symbols.Cache!.TryGetDiscovery(identity) is { } record && Verify(physical, record)
            ? record with { Source = $"profile cache (record verified: kernel PE header GUID/age at the base); {record.Source}" }
            : null;
        string path = found is null ? "low stub" : "profile cache";
        found ??= FromLowStub(physical, low, cancellationToken);
        if (found is null)
        {
            path = "scan";
        }
        double discovered = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        WindowsDiscovery discovery;
        TypeModel types;
        string symbolPath;
        if (found is null)
        {
            (discovery, types, symbolPath) = FromScan(physical, symbols, cancellationToken);
        }
        else
        {
            (_, types, symbolPath) = LoadSymbols(symbols, [found.Image], cancellationToken);
            discovery = found;
        }
        var kernel = new WindowsKernel(physical, discovery.Image, types, symbolPath, discovery.Dtb, discovery.SelfRefIndex, discovery.KernelBase, discovery.Source)
        {
            DiscoveryPath = path,
            DiscoveryMilliseconds = discovered,
        };
        if (!discovery.Confirmed)
        {
            kernel = ConfirmWithSystem(kernel, cancellationToken);
            if (identity is not null)
            {
                symbols.Cache!.PutDiscovery(identity, new WindowsDiscovery(kernel.Image, kernel.Dtb, kernel.SelfRefIndex, kernel.KernelBase, kernel.DtbSource, Confirmed: true));
            }
        }
        return kernel;
    }

    /// <summary>The first megabyte of physical memory (holes read as zeros).</summary>
    private static byte[] ReadLowMegabyte(IPhysicalMemory physical)
    {
        byte[] low = new byte[WindowsLowStub.SearchBytes];
        int got = physical.Read(0, low);
        for (int at = (got + PageSize - 1) & ~(PageSize - 1); at < low.Length; at += PageSize)
        {
            physical.Read((ulong)at, low.AsSpan(at, PageSize));
        }
        return low;
    }

    /// <summary>What identifies a capture for its discovery record: format, physical layout and a hash of the first
    /// megabyte of physical memory (which holds the low stub with this boot's CR3 and kernel entry).</summary>
    public static string CaptureIdentity(IPhysicalMemory physical, ReadOnlySpan<byte> low)
    {
        ArgumentNullException.ThrowIfNull(physical);
        string format = physical is ICaptureMetadata metadata ? metadata.Metadata.Format : physical.GetType().Name;
        ulong end = 0, bytes = 0;
        int runs = 0;
        foreach (PhysicalRun run in physical.Runs)
        {
            end = Math.Max(end, run.End);
            bytes += run.End - run.PhysicalAddress;
            runs++;
        }
        string hash = System.Convert.ToHexStringLower(System.IO.Hashing.XxHash128.Hash(low));
        return $"windows|{format}|{runs}|{bytes}|{end}|{hash}";
    }

    /// <summary>Cheap check of a record: the DTB still has its self-reference and the kernel image at the base, read
    /// through it, has the recorded PDB name, GUID, age and physical address.</summary>
    private static bool Verify(IPhysicalMemory physical, WindowsDiscovery record)
        => WindowsLowStub.SelfReference(physical, record.Dtb) == record.SelfRefIndex
           && WindowsLowStub.IsKernelAt(new AddressSpace(physical, record.Dtb), record.KernelBase, out PeImageCandidate? image)
           && image == record.Image;

    private static WindowsDiscovery? FromLowStub(IPhysicalMemory physical, byte[] low, CancellationToken cancellationToken)
    {
        if (WindowsLowStub.Find(low) is not { } stub)
        {
            return null;
        }
        int selfRef = WindowsLowStub.SelfReference(physical, stub.Cr3);
        if (selfRef < 0 || !stub.TryLocateKernel(physical, out PeImageCandidate? image, out ulong kernelBase, cancellationToken))
        {
            return null;
        }
        return new WindowsDiscovery(image!, stub.Cr3, selfRef, kernelBase,
            $"low stub (PROCESSOR_START_BLOCK at physical 0x{stub.PhysicalAddress:X}): CR3, kernel below the entry hint 0x{stub.KernelHint:X}");
    }

    /// <summary>The fallback: every physical page scanned for kernel images, then for a self-referencing PML4 mapping one.</summary>
    private static (WindowsDiscovery, TypeModel, string) FromScan(IPhysicalMemory physical, SymbolStore symbols, CancellationToken cancellationToken)
    {
        KernelImageScan scan = KernelImageScanner.Scan(physical, cancellationToken: cancellationToken);
        IReadOnlyList<PeImageCandidate> kernels = scan.Kernels;
        if (kernels.Count == 0)
        {
            throw new KernelNotFoundException($"no Windows x64 kernel image (ntkrnlmp/ntoskrnl.pdb RSDS record) found in physical memory ({scan.PagesScanned} pages scanned)");
        }
        (PeImageCandidate image, TypeModel types, string path) = LoadSymbols(symbols, kernels, cancellationToken);
        (ulong dtb, int selfRef, ulong kernelBase, int candidates) = FindDtb(physical, image.PhysicalAddress, cancellationToken);
        if (candidates < 0)
        {
            throw new KernelNotFoundException(candidates == -1
                ? $"no page directory maps the kernel image at physical 0x{image.PhysicalAddress:X}: no self-referencing PML4 page found"
                : $"no page directory maps the kernel image at physical 0x{image.PhysicalAddress:X} ({-candidates - 1} self-referencing PML4 candidates checked)");
        }
        return (new WindowsDiscovery(image, dtb, selfRef, kernelBase, "self-referencing PML4 scan"), types, path);
    }

    /// <summary>The first candidate whose symbol table is found and loads.</summary>
    private static (PeImageCandidate, TypeModel, string) LoadSymbols(SymbolStore symbols, IReadOnlyList<PeImageCandidate> kernels, CancellationToken cancellationToken)
    {
        var misses = new List<string>();
        foreach (PeImageCandidate candidate in kernels)
        {
            SymbolLookup lookup = symbols.FindWindows(candidate.PdbName, candidate.Guid, candidate.Age, cancellationToken);
            if (!lookup.Found)
            {
                misses.Add($"{candidate.PdbName} {candidate.GuidAge} at 0x{candidate.PhysicalAddress:X}: no table (looked in {string.Join(", ", lookup.Tried)})");
                continue;
            }
            try
            {
                return (candidate, symbols.LoadTypes(lookup.Path!, $"{candidate.PdbName} {candidate.GuidAge}"), lookup.Path!);
            }
            catch (SymbolFormatException e)
            {
                misses.Add($"{candidate.PdbName} {candidate.GuidAge}: {lookup.Path} unreadable: {e.Message}");
            }
        }
        throw new KernelNotFoundException($"no symbol table for the Windows kernel: {string.Join(" | ", misses)}");
    }
}
