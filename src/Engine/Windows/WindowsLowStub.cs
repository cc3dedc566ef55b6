using System.Buffers.Binary;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>
/// The x64 low stub Windows leaves in the first megabyte of physical memory: the PROCESSOR_START_BLOCK the boot
/// processor prepares for starting the others. It holds the kernel's CR3 (the System page tables) and a kernel-space
/// entry address, which is all kernel discovery needs: a few reads instead of scanning every physical page.
/// </summary>
/// <param name="PhysicalAddress">Physical address of the page holding the block.</param>
/// <param name="Cr3">The page-table base recorded in the block's processor state.</param>
/// <param name="KernelHint">The long-mode target address (inside the kernel, or hal.dll on older builds).</param>
public sealed record WindowsLowStub(ulong PhysicalAddress, ulong Cr3, ulong KernelHint)
{
    /// <summary>Only the first megabyte is searched (real-mode reachable memory, where Windows places the block).</summary>
    public const int SearchBytes = 1 << 20;

    /// <summary>Byte offsets inside the block (stable across Windows x64 releases from Windows 7 to 11).</summary>
    public const int HintOffset = 0x70, Cr3Offset = 0xA0;

    /// <summary>The first eight bytes with the jump's displacement byte masked out: a near jump (E9) followed by the
    /// block's fixed fields.</summary>
    public const ulong JumpSignature = 0x00000001000600E9, JumpMask = 0xFFFFFFFFFFFF00FF;

    /// <summary>Farthest the kernel base is looked for below the hint.</summary>
    public const ulong MaxHintDistance = 64UL << 20;

    private const int PageSize = 0x1000;
    private const ulong TwoMiB = 0x200000;
    private const ulong Present = 1, Write = 2, UserBit = 4, LargePage = 0x80;
    private const ulong AddressMask = 0x000FFFFFFFFFF000;

    /// <summary>
    /// The first block in <paramref name="low"/> (the first megabyte of physical memory, as read; page 0 skipped,
    /// it is the real-mode interrupt table) whose jump signature, kernel-space 4-byte-aligned hint and page-aligned CR3
    /// below 1 TiB all hold. Null when none does.
    /// </summary>
    public static WindowsLowStub? Find(ReadOnlySpan<byte> low)
    {
        for (int at = PageSize; at + PageSize <= low.Length; at += PageSize)
        {
            ReadOnlySpan<byte> page = low.Slice(at, PageSize);
            ulong head = BinaryPrimitives.ReadUInt64LittleEndian(page);
            ulong hint = BinaryPrimitives.ReadUInt64LittleEndian(page[HintOffset..]);
            ulong cr3 = BinaryPrimitives.ReadUInt64LittleEndian(page[Cr3Offset..]);
            if ((head & JumpMask) == JumpSignature && (hint & 0xFFFFF80000000003) == 0xFFFFF80000000000
                && cr3 != 0 && (cr3 & 0xFFFFFF0000000FFF) == 0)
            {
                return new WindowsLowStub((ulong)at, cr3, hint);
            }
        }
        return null;
    }

    /// <summary>The self-referencing entry index (256-511) of the PML4 at <paramref name="dtb"/>, or -1.</summary>
    public static int SelfReference(IPhysicalMemory physical, ulong dtb)
    {
        byte[] page = new byte[PageSize];
        if (physical.Read(dtb, page) != PageSize)
        {
            return -1;
        }
        for (int i = 256; i < 512; i++)
        {
            ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 8));
            if ((entry & AddressMask) == dtb && (entry & (Present | Write | UserBit | LargePage)) == (Present | Write))
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// The kernel image at or below the hint, through the stub's CR3: the DOS header of a PE whose CodeView record
    /// names a kernel PDB, looked for first at 2 MiB boundaries (the x64 kernel is mapped with large pages), then on
    /// every page, up to <see cref="MaxHintDistance"/> below. Images of other PDBs (hal.dll on Windows 7) are passed
    /// over. The result's <see cref="PeImageCandidate.PhysicalAddress"/> is the header's physical address.
    /// </summary>
    public bool TryLocateKernel(IPhysicalMemory physical, out PeImageCandidate? image, out ulong kernelBase, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(physical);
        var space = new AddressSpace(physical, Cr3);
        ulong lowest = KernelHint - Math.Min(KernelHint - 0xFFFF800000000000, MaxHintDistance);
        foreach (ulong step in (ReadOnlySpan<ulong>)[TwoMiB, PageSize])
        {
            for (ulong va = KernelHint & ~(step - 1); va >= lowest && va <= KernelHint; va -= step)
            {
                if ((va & 0x3FFFFF) == 0)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                }
                if (step == PageSize && (va & (TwoMiB - 1)) == 0)
                {
                    continue;   // looked at in the first pass
                }
                if (IsKernelAt(space, va, out image))
                {
                    kernelBase = va;
                    return true;
                }
            }
        }
        image = null;
        kernelBase = 0;
        return false;
    }

    /// <summary>True when a kernel PE image (by its CodeView record) starts at <paramref name="va"/>; the candidate
    /// carries the physical address of the header.</summary>
    internal static bool IsKernelAt(AddressSpace space, ulong va, out PeImageCandidate? image)
    {
        image = null;
        Span<byte> magic = stackalloc byte[2];
        if (space.Read(va, magic) != 2 || magic[0] != (byte)'M' || magic[1] != (byte)'Z'
            || !KernelImageScanner.TryReadMappedImage(space, va, out PeImageCandidate? mapped) || !mapped.IsKernel
            || !space.TryTranslate(va, out Translation translation, out _))
        {
            return false;
        }
        image = mapped with { PhysicalAddress = translation.PhysicalAddress };
        return true;
    }
}

/// <summary>
/// A capture's <see cref="WindowsDiscovery"/> kept in the profile cache (kind "discovery", keyed by
/// <see cref="WindowsKernel.CaptureIdentity"/>), so that the next command on the same capture skips discovery. The
/// entry carries the cache's header and checksum; a damaged or unparsable one reads as a miss and is rewritten.
/// </summary>
internal static class WindowsDiscoveryRecord
{
    private const string Kind = "discovery";
    private const int Version = 1;

    public static WindowsDiscovery? TryGetDiscovery(this ProfileCache cache, string identity)
    {
        if (!cache.TryRead(Kind, identity, out CacheReader reader))
        {
            return null;
        }
        try
        {
            if (reader.Int32() != Version)
            {
                return null;
            }
            ulong dtb = (ulong)reader.Int64(), kernelBase = (ulong)reader.Int64(), physical = (ulong)reader.Int64();
            int selfRef = reader.Int32();
            uint age = (uint)reader.Int32(), sizeOfImage = (uint)reader.Int32();
            string pdb = reader.String(), guid = reader.String(), source = reader.String();
            return new WindowsDiscovery(new PeImageCandidate(physical, pdb, guid, age, sizeOfImage), dtb, selfRef, kernelBase, source, Confirmed: true);
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    public static void PutDiscovery(this ProfileCache cache, string identity, WindowsDiscovery discovery)
    {
        var writer = new CacheWriter();
        writer.Int32(Version);
        writer.Int64((long)discovery.Dtb);
        writer.Int64((long)discovery.KernelBase);
        writer.Int64((long)discovery.Image.PhysicalAddress);
        writer.Int32(discovery.SelfRefIndex);
        writer.Int32((int)discovery.Image.Age);
        writer.Int32((int)discovery.Image.SizeOfImage);
        writer.String(discovery.Image.PdbName);
        writer.String(discovery.Image.Guid);
        writer.String(discovery.Source);
        cache.Write(Kind, identity, $"Windows kernel discovery: {discovery.Image.PdbName} {discovery.Image.GuidAge} at 0x{discovery.KernelBase:X}, DTB 0x{discovery.Dtb:X}", writer.ToArray());
    }
}
