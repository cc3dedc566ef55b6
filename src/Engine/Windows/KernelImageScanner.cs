using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>
/// A PE32+ (x64) image found in physical memory whose debug directory names its PDB with a CodeView RSDS record.
/// </summary>
/// <param name="PhysicalAddress">Physical address of the image's DOS header (page-aligned).</param>
/// <param name="PdbName">The PDB file name (the last component of the path the linker recorded), e.g. ntkrnlmp.pdb.</param>
/// <param name="Guid">The PDB GUID as the 32 upper-case hex digits Microsoft's symbol paths use.</param>
/// <param name="Age">The PDB age.</param>
/// <param name="SizeOfImage">SizeOfImage from the optional header.</param>
public sealed record PeImageCandidate(ulong PhysicalAddress, string PdbName, string Guid, uint Age, uint SizeOfImage)
{
    /// <summary>The PDB names of the Windows x64 (and older x86) kernels.</summary>
    public static IReadOnlyList<string> KernelPdbNames { get; } = ["ntkrnlmp.pdb", "ntoskrnl.pdb", "ntkrnlpa.pdb", "ntkrpamp.pdb"];

    /// <summary>True when <see cref="PdbName"/> is a Windows kernel's.</summary>
    public bool IsKernel => KernelPdbNames.Contains(PdbName, StringComparer.OrdinalIgnoreCase);

    /// <summary>The symbol table key <c>GUID-age</c> (age in decimal, as Volatility's ISF file names write it).</summary>
    public string GuidAge => $"{Guid}-{Age}";
}

/// <summary>The result of <see cref="KernelImageScanner.Scan"/>.</summary>
/// <param name="Images">Kernel candidates first, then other images, each group by address; at most the limit.</param>
/// <param name="PagesScanned">Page-aligned addresses examined.</param>
/// <param name="Truncated">More images were found than the limit allows.</param>
public sealed record KernelImageScan(IReadOnlyList<PeImageCandidate> Images, long PagesScanned, bool Truncated)
{
    /// <summary>The images whose PDB is a Windows kernel's.</summary>
    public IReadOnlyList<PeImageCandidate> Kernels => Images.Where(i => i.IsKernel).ToList();
}

/// <summary>
/// Finds Windows x64 kernel image candidates in physical memory from the image alone: page-aligned "MZ" headers whose
/// PE header is for AMD64 and whose debug directory holds a CodeView RSDS record (PDB name, GUID, age).
/// </summary>
/// <remarks>
/// <para>Headers are read with bounded reads of physical memory; garbage, truncated headers and offsets pointing
/// outside the image make the page a non-candidate, never an exception.</para>
/// <para>The debug directory and RSDS record are read at <c>PhysicalAddress + RVA</c>, which assumes the image is
/// physically contiguous up to them (true of the kernel, which the loader maps with large pages). Images whose
/// pages are scattered are missed.</para>
/// <para>Thread-safe: no shared state.</para>
/// </remarks>
public static class KernelImageScanner
{
    /// <summary>Default cap on the number of images reported.</summary>
    public const int DefaultMaxImages = 64;

    private const int PageSize = 0x1000;

    // IMAGE_DOS_HEADER
    private const ushort DosMagic = 0x5A4D;          // "MZ"
    private const int DosLfanewOffset = 0x3C;
    private const int DosHeaderSize = 0x40;

    // IMAGE_NT_HEADERS64: "PE\0\0", then IMAGE_FILE_HEADER (20 bytes), then IMAGE_OPTIONAL_HEADER64
    private const uint PeSignature = 0x00004550;     // "PE\0\0"
    private const int FileHeaderOffset = 4;
    private const int MachineOffset = FileHeaderOffset + 0;
    private const int SizeOfOptionalHeaderOffset = FileHeaderOffset + 16;
    private const int OptionalHeaderOffset = FileHeaderOffset + 20;
    private const ushort MachineAmd64 = 0x8664;
    private const ushort Pe32PlusMagic = 0x20B;

    // offsets inside IMAGE_OPTIONAL_HEADER64
    private const int OptSizeOfImage = 56;
    private const int OptNumberOfRvaAndSizes = 108;
    private const int OptDataDirectories = 112;
    private const int DataDirectorySize = 8;
    private const int DebugDirectoryIndex = 6;
    private const int OptMinimumSize = OptDataDirectories + (DebugDirectoryIndex + 1) * DataDirectorySize;   // 168

    // IMAGE_DEBUG_DIRECTORY (28 bytes)
    private const int DebugEntrySize = 28;
    private const int DebugTypeOffset = 12;
    private const int DebugSizeOfDataOffset = 16;
    private const int DebugAddressOfRawDataOffset = 20;
    private const uint DebugTypeCodeView = 2;
    private const int MaxDebugEntries = 32;

    // CodeView RSDS record: "RSDS", GUID (16), age (u32), NUL-terminated UTF-8 PDB path
    private const uint RsdsSignature = 0x53445352;   // "RSDS"
    private const int RsdsGuidOffset = 4;
    private const int RsdsAgeOffset = 20;
    private const int RsdsNameOffset = 24;
    private const int MaxRsdsBytes = 1024;

    /// <summary>Largest SizeOfImage accepted (the x64 kernel is well under this).</summary>
    public const uint MaxSizeOfImage = 512u * 1024 * 1024;

    /// <summary>Scans every page-aligned physical address held by <paramref name="memory"/>.</summary>
    /// <param name="memory">The capture; only read.</param>
    /// <param name="maxImages">At most this many images are reported (kernels are kept before other images).</param>
    /// <param name="cancellationToken">Checked between blocks of 4 MiB.</param>
    public static KernelImageScan Scan(IPhysicalMemory memory, int maxImages = DefaultMaxImages, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxImages);
        var kernels = new List<PeImageCandidate>();
        var others = new List<PeImageCandidate>();
        bool truncated = false;
        long pages = 0;
        foreach (PhysicalRun run in memory.Runs)
        {
            ulong firstPage = (run.PhysicalAddress + PageSize - 1) & ~(ulong)(PageSize - 1);
            if (run.Storage != RunStorage.Zero && run.End > firstPage)
            {
                pages += (long)((run.End - firstPage + PageSize - 1) / PageSize);
            }
        }
        // Every page start is tested for "MZ" (cheap) on all cores, block by block in place; only those pages are read further.
        IEnumerable<PeImageCandidate> found = ParallelScan.Blocks<PeImageCandidate>(memory, 4 << 20, 1,
            (in ScanBlock block, ReadOnlySpan<byte> data, List<PeImageCandidate> images) =>
            {
                ulong firstPage = (block.RangeStart + PageSize - 1) & ~(ulong)(PageSize - 1);
                ulong at = Math.Max(firstPage, (block.PhysicalAddress + PageSize - 1) & ~(ulong)(PageSize - 1));
                byte[]? header = null;
                for (; at < block.PhysicalAddress + (ulong)block.Owned; at += PageSize)
                {
                    int offset = (int)(at - block.PhysicalAddress);
                    if (offset + 2 > data.Length || BinaryPrimitives.ReadUInt16LittleEndian(data[offset..]) != DosMagic)
                    {
                        continue;
                    }
                    header ??= new byte[PageSize];
                    if (TryReadImage(memory, at, header, out PeImageCandidate? image))
                    {
                        images.Add(image);
                    }
                }
            }, coalesce: false, cancellationToken: cancellationToken);
        foreach (PeImageCandidate image in found)
        {
            List<PeImageCandidate> list = image.IsKernel ? kernels : others;
            if (list.Count < maxImages)
            {
                list.Add(image);
            }
            else
            {
                truncated = true;
            }
        }
        var images = new List<PeImageCandidate>(kernels);
        images.AddRange(others);
        if (images.Count > maxImages)
        {
            truncated = true;
            images.RemoveRange(maxImages, images.Count - maxImages);
        }
        return new KernelImageScan(images, pages, truncated);
    }

    /// <summary>Reads the PE image whose DOS header is at <paramref name="physicalAddress"/>, if it is one with an RSDS record.</summary>
    /// <returns>False (never an exception) for anything that is not a PE32+ AMD64 image with a readable CodeView RSDS record.</returns>
    public static bool TryReadImage(IPhysicalMemory memory, ulong physicalAddress, [NotNullWhen(true)] out PeImageCandidate? image)
        => TryReadImage(memory, physicalAddress, new byte[PageSize], out image);

    /// <summary>
    /// Reads the CodeView record of a PE image mapped at <paramref name="imageBase"/> in a virtual address space (a
    /// loaded driver: its pages need not be physically contiguous). The result's <see cref="PeImageCandidate.PhysicalAddress"/>
    /// holds the virtual base. False (never an exception) when the header or the record does not read.
    /// </summary>
    public static bool TryReadMappedImage(IVirtualMemory memory, ulong imageBase, [NotNullWhen(true)] out PeImageCandidate? image)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return TryReadImage(memory.Read, imageBase, new byte[PageSize], out image);
    }

    private static bool TryReadImage(IPhysicalMemory memory, ulong pa, byte[] buffer, [NotNullWhen(true)] out PeImageCandidate? image)
        => TryReadImage(memory.Read, pa, buffer, out image);

    /// <summary>Reads bytes at an address (physical or virtual); returns how many were copied.</summary>
    private delegate int ReadAt(ulong address, Span<byte> destination);

    private static bool TryReadImage(ReadAt read, ulong pa, byte[] buffer, [NotNullWhen(true)] out PeImageCandidate? image)
    {
        image = null;
        int got = read(pa, buffer);
        ReadOnlySpan<byte> page = buffer.AsSpan(0, got);
        if (page.Length < DosHeaderSize || BinaryPrimitives.ReadUInt16LittleEndian(page) != DosMagic)
        {
            return false;
        }
        uint lfanew = BinaryPrimitives.ReadUInt32LittleEndian(page[DosLfanewOffset..]);
        if (lfanew < DosHeaderSize || lfanew > (uint)page.Length - OptionalHeaderOffset)
        {
            return false;
        }
        ReadOnlySpan<byte> nt = page[(int)lfanew..];
        if (BinaryPrimitives.ReadUInt32LittleEndian(nt) != PeSignature
            || BinaryPrimitives.ReadUInt16LittleEndian(nt[MachineOffset..]) != MachineAmd64)
        {
            return false;
        }
        int optionalSize = BinaryPrimitives.ReadUInt16LittleEndian(nt[SizeOfOptionalHeaderOffset..]);
        if (optionalSize < OptMinimumSize || OptionalHeaderOffset + optionalSize > nt.Length)
        {
            return false;
        }
        ReadOnlySpan<byte> optional = nt.Slice(OptionalHeaderOffset, optionalSize);
        if (BinaryPrimitives.ReadUInt16LittleEndian(optional) != Pe32PlusMagic)
        {
            return false;
        }
        uint sizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(optional[OptSizeOfImage..]);
        uint directories = BinaryPrimitives.ReadUInt32LittleEndian(optional[OptNumberOfRvaAndSizes..]);
        if (sizeOfImage < PageSize || sizeOfImage > MaxSizeOfImage || directories <= DebugDirectoryIndex)
        {
            return false;
        }
        ReadOnlySpan<byte> debug = optional[(OptDataDirectories + DebugDirectoryIndex * DataDirectorySize)..];
        uint debugRva = BinaryPrimitives.ReadUInt32LittleEndian(debug);
        uint debugSize = BinaryPrimitives.ReadUInt32LittleEndian(debug[4..]);
        if (debugSize < DebugEntrySize || (ulong)debugRva + debugSize > sizeOfImage)
        {
            return false;
        }
        int entries = (int)Math.Min(debugSize / DebugEntrySize, MaxDebugEntries);
        Span<byte> entry = stackalloc byte[DebugEntrySize];
        for (int i = 0; i < entries; i++)
        {
            if (read(pa + debugRva + (ulong)(i * DebugEntrySize), entry) != DebugEntrySize
                || BinaryPrimitives.ReadUInt32LittleEndian(entry[DebugTypeOffset..]) != DebugTypeCodeView)
            {
                continue;
            }
            uint dataSize = BinaryPrimitives.ReadUInt32LittleEndian(entry[DebugSizeOfDataOffset..]);
            uint dataRva = BinaryPrimitives.ReadUInt32LittleEndian(entry[DebugAddressOfRawDataOffset..]);
            if (dataSize <= RsdsNameOffset || dataRva == 0 || (ulong)dataRva + dataSize > sizeOfImage)
            {
                continue;
            }
            if (TryReadRsds(read, pa + dataRva, (int)Math.Min(dataSize, MaxRsdsBytes), out string? name, out string? guid, out uint age))
            {
                image = new PeImageCandidate(pa, name!, guid!, age, sizeOfImage);
                return true;
            }
        }
        return false;
    }

    private static bool TryReadRsds(ReadAt read, ulong pa, int length, out string? name, out string? guid, out uint age)
    {
        name = guid = null;
        age = 0;
        Span<byte> record = stackalloc byte[MaxRsdsBytes];
        record = record[..read(pa, record[..length])];
        if (record.Length <= RsdsNameOffset || BinaryPrimitives.ReadUInt32LittleEndian(record) != RsdsSignature)
        {
            return false;
        }
        ReadOnlySpan<byte> path = record[RsdsNameOffset..];
        int end = path.IndexOf((byte)0);
        if (end <= 0)
        {
            return false;
        }
        path = path[..end];
        foreach (byte b in path)
        {
            if (b < 0x20 || b == 0x7F)
            {
                return false;
            }
        }
        string full;
        try
        {
            full = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(path);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
        name = full[(full.LastIndexOfAny(['\\', '/']) + 1)..];
        if (name.Length == 0)
        {
            return false;
        }
        guid = PdbGuid.Format(record.Slice(RsdsGuidOffset, 16));
        age = BinaryPrimitives.ReadUInt32LittleEndian(record[RsdsAgeOffset..]);
        return true;
    }
}
