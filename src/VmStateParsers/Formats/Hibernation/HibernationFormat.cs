using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Hibernation;

/// <summary>
/// Windows 8 and later hibernation files (hiberfil.sys): page 0 holds PO_MEMORY_IMAGE, whose size (LengthSelf)
/// picks the per-build layout; two restoration sets (boot/loader and kernel) are chains of compression sets, each a
/// u32 header, page descriptors (PFN runs of up to 16 pages) and the Xpress-compressed (or stored) pages.
/// Opening walks every compression set header once and keeps a sorted table of page extents; reads decode one set.
/// </summary>
internal sealed class HibernationFormat : CaptureFormat
{
    private const string FormatName = "hiberfil";
    private const string Header = "PO_MEMORY_IMAGE";

    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "hiberfil";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
    {
        if (head.Length < 4)
        {
            return FormatProbeResult.NoMatch;
        }
        return BinaryPrimitives.ReadUInt32LittleEndian(head) switch
        {
            HibernationLayout.SignatureHibr or HibernationLayout.SignatureWake or HibernationLayout.SignatureRstr
                or HibernationLayout.SignatureHorm or HibernationLayout.SignatureLegacyHibr or HibernationLayout.SignatureLegacyWake
                => FormatProbeResult.Match,
            _ => FormatProbeResult.NoMatch,
        };
    }

    /// <summary>True when the first page of the file is all zero: what Windows leaves after resuming (it wipes the header).</summary>
    internal static bool IsWipedHeader(ReadOnlySpan<byte> head)
        => head.Length >= HibernationLayout.PageSize && !head[..HibernationLayout.PageSize].ContainsAnyExcept((byte)0);

    /// <summary>The message for a wiped header.</summary>
    internal const string WipedHeaderMessage =
        "the header page is all zero: Windows wipes hiberfil.sys's header once it has resumed from it, so the compressed memory left in the file can no longer be located";

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        ReadOnlySpan<byte> page0 = file.Span(0, (int)Math.Min(file.Length, HibernationLayout.PageSize));
        if (page0.Length > 0 && !page0.ContainsAnyExcept((byte)0))
        {
            throw Fail.At(FormatName, $"{Header}.Signature", 0, WipedHeaderMessage);
        }
        var h = new FieldReader(page0, 0, FormatName, Header);
        uint signature = h.U32(HibernationLayout.SignatureOffset, "Signature");
        string signatureText = SignatureText(signature);
        switch (signature)
        {
            case HibernationLayout.SignatureHibr:
            case HibernationLayout.SignatureWake:
            case HibernationLayout.SignatureRstr:
            case HibernationLayout.SignatureHorm:
                break;
            case HibernationLayout.SignatureLegacyHibr:
            case HibernationLayout.SignatureLegacyWake:
                throw h.Fail("Signature", 0, $"\"{signatureText}\" (lower case) is the Windows XP/Vista/7 hibernation format, which is not supported (only Windows 8 and later)");
            default:
                throw h.Fail("Signature", 0, $"0x{signature:X8} is not a hibernation signature (HIBR, WAKE, RSTR, HORM)");
        }
        uint lengthSelf = h.U32(HibernationLayout.LengthSelfOffset, "LengthSelf");
        HibernationProfile profile = HibernationLayout.FindByLengthSelf(lengthSelf)
            ?? throw h.Fail("LengthSelf", HibernationLayout.LengthSelfOffset,
                $"0x{lengthSelf:X} matches no known Windows 8+ layout (known: {string.Join(", ", HibernationLayout.Profiles.Select(p => $"0x{p.LengthSelf:X} {p.Name}"))})");
        h.Bytes(0, (int)lengthSelf, "LengthSelf");
        uint pageSize = h.U32(profile.PageSize, "PageSize");
        if (pageSize != HibernationLayout.PageSize)
        {
            throw h.Fail("PageSize", profile.PageSize, $"page size {pageSize} is not 4096");
        }
        ulong systemTime = h.U64(profile.SystemTime, "SystemTime");
        ulong loaderPages = h.U64(profile.NumPagesForLoader, "NumPagesForLoader");
        ulong kernelPages = h.U64(profile.KernelPagesProcessed, "KernelPagesProcessed");
        ulong firstBoot = Pointer(h, profile, profile.FirstBootRestorePage, "FirstBootRestorePage");
        ulong firstKernel = Pointer(h, profile, profile.FirstKernelRestorePage, "FirstKernelRestorePage");
        ulong highest = Pointer(h, profile, profile.HighestPhysicalPage, "HighestPhysicalPage");
        CheckPages(h, profile.NumPagesForLoader, "NumPagesForLoader", loaderPages, limits);
        CheckPages(h, profile.KernelPagesProcessed, "KernelPagesProcessed", kernelPages, limits);
        ulong maxPfn = limits.MaxPhysicalAddress / HibernationLayout.PageSize;
        if (highest >= maxPfn)
        {
            throw h.Fail("HighestPhysicalPage", profile.HighestPhysicalPage, $"page 0x{highest:X} is beyond the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
        }

        var metadata = new CaptureMetadata("Windows hibernation file (hiberfil.sys)");
        var walk = new Walk(file, limits, profile, maxPfn, metadata);
        walk.RestorationSet("boot", firstBoot, loaderPages, profile.FirstBootRestorePage, "FirstBootRestorePage");
        int bootSets = walk.Sets.Count;
        walk.RestorationSet("kernel", firstKernel, kernelPages, profile.FirstKernelRestorePage, "FirstKernelRestorePage");
        int kernelSets = walk.Sets.Count - bootSets;

        HiberExtent[] extents = [.. walk.Extents];
        Array.Sort(extents);
        (extents, ulong duplicates) = DropOverlaps(extents);
        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        ulong beyondHighest = 0;
        for (int i = 0; i < extents.Length;)
        {
            int first = i;
            ulong end = extents[i].EndPfn;
            for (i++; i < extents.Length && extents[i].Pfn == end; i++)
            {
                end = extents[i].EndPfn;
            }
            if (end > highest + 1)
            {
                beyondHighest += end - Math.Max(highest + 1, extents[first].Pfn);
            }
            ulong start = extents[first].Pfn;
            builder.Add(new PhysicalRun(start * HibernationLayout.PageSize, (end - start) * HibernationLayout.PageSize, first, RunStorage.Decoded), "page descriptors", -1);
        }

        metadata.Add("signature", signatureText);
        metadata.Add("layout", $"{profile.Name}: {profile.Builds} (chosen by LengthSelf 0x{lengthSelf:X}; the build is a guess from the layout)");
        metadata.Add("architecture", profile.Is32Bit ? "x86" : "x64");
        metadata.Add("systemTime", FileTime(systemTime));
        metadata.Add("numPagesForLoader", Dec(loaderPages));
        metadata.Add("firstBootRestorePage", $"0x{firstBoot:X}");
        metadata.Add("kernelPagesProcessed", Dec(kernelPages));
        metadata.Add("firstKernelRestorePage", $"0x{firstKernel:X}");
        metadata.Add("highestPhysicalPage", $"0x{highest:X} ({Hex(highest + 1)} pages of physical address space)");
        metadata.Add("compressionSets", $"{walk.Sets.Count} (boot {bootSets}, kernel {kernelSets})");
        metadata.Add("setsByCompression", walk.KindSummary());
        metadata.Add("pagesStored", Dec(walk.PagesStored - duplicates));
        metadata.Add("processorState", "not read (where Windows 8+ keeps KPROCESSOR_STATE/CR3 in the file is not documented in our references)");
        if (signature == HibernationLayout.SignatureWake)
        {
            metadata.Warnings.Add("signature WAKE: Windows had started resuming from this file when it was copied; read like HIBR (as LeechCore does)");
        }
        else if (signature != HibernationLayout.SignatureHibr)
        {
            metadata.Warnings.Add($"signature {signatureText}: read like HIBR, but this state is not verified for Windows 8 and later");
        }
        if (duplicates > 0)
        {
            metadata.Warnings.Add($"{Dec(duplicates)} pages are stored more than once; the copy first in physical order (then set order) is used");
        }
        if (beyondHighest > 0)
        {
            metadata.Warnings.Add($"{Dec(beyondHighest)} stored pages lie above HighestPhysicalPage 0x{highest:X} (wrong layout guess, or corrupt descriptors)");
        }
        return new ParsedCapture(file, builder.ToArray(), new HibernationDecoder(file, walk.Sets, extents), metadata);
    }

    private static ulong Pointer(FieldReader h, HibernationProfile profile, int offset, string field)
        => profile.Is32Bit ? h.U32(offset, field) : h.U64(offset, field);

    private static void CheckPages(FieldReader h, int offset, string field, ulong pages, ParserLimits limits)
    {
        if (pages > limits.MaxHibernationPages)
        {
            throw h.Fail(field, offset, $"{pages} pages is more than {limits.MaxHibernationPages} (ParserLimits.MaxHibernationPages)");
        }
    }

    /// <summary>Sorted extents with pages already held by an earlier extent cut off; returns how many pages were cut.</summary>
    private static (HiberExtent[] Extents, ulong Duplicates) DropOverlaps(HiberExtent[] sorted)
    {
        ulong duplicates = 0;
        int kept = 0;
        ulong covered = 0;
        for (int i = 0; i < sorted.Length; i++)
        {
            HiberExtent e = sorted[i];
            if (kept > 0 && e.Pfn < covered)
            {
                ulong cut = Math.Min(covered - e.Pfn, e.Pages);
                duplicates += cut;
                if (cut == e.Pages)
                {
                    continue;
                }
                e = new HiberExtent(e.Pfn + cut, e.Set, (ushort)(e.PageInSet + cut), (ushort)(e.Pages - cut));
            }
            sorted[kept++] = e;
            covered = e.EndPfn;
        }
        return (kept == sorted.Length ? sorted : sorted[..kept], duplicates);
    }

    internal static string SignatureText(uint signature)
    {
        Span<char> text = stackalloc char[4];
        for (int i = 0; i < 4; i++)
        {
            byte b = (byte)(signature >> (8 * i));
            text[i] = b is >= 0x20 and < 0x7F ? (char)b : '.';
        }
        return new string(text);
    }

    private static string FileTime(ulong value)
    {
        if (value == 0)
        {
            return "0 (not set)";
        }
        return value <= (ulong)DateTime.MaxValue.ToFileTime()
            ? DateTime.FromFileTimeUtc((long)value).ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture)
            : $"0x{value:X} (not a valid FILETIME)";
    }

    private static string Dec(ulong value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Hex(ulong value) => $"0x{value:X}";

    /// <summary>The walk over restoration sets: builds the set table and the (unsorted) extents.</summary>
    private sealed class Walk(IByteSource file, ParserLimits limits, HibernationProfile profile, ulong maxPfn, CaptureMetadata metadata)
    {
        private readonly int[] _kinds = new int[4];

        public HiberSetTable Sets { get; } = new();

        public List<HiberExtent> Extents { get; } = [];

        public ulong PagesStored { get; private set; }

        public string KindSummary()
            => $"Xpress LZ77 {_kinds[(int)HiberSetKind.XpressPlain]}, Xpress Huffman {_kinds[(int)HiberSetKind.XpressHuffman]}, "
               + $"type 1 (Huffman, else LZ77) {_kinds[(int)HiberSetKind.Type1]}, stored {_kinds[(int)HiberSetKind.Stored]}";

        public void RestorationSet(string name, ulong firstPage, ulong pageTotal, int fieldOffset, string field)
        {
            if (pageTotal == 0)
            {
                return;
            }
            if (firstPage == 0 || firstPage >= (ulong)file.Length / HibernationLayout.PageSize)
            {
                throw Fail.At(FormatName, $"{Header}.{field}", fieldOffset,
                    $"the {name} restoration set ({pageTotal} pages) starts at page 0x{firstPage:X}, which is {(firstPage == 0 ? "the header page" : $"past the end of the file (0x{file.Length:X} bytes)")}");
            }
            long offset = (long)firstPage * HibernationLayout.PageSize;
            ulong done = 0;
            int descriptorSize = profile.DescriptorSize;
            for (int index = 0; done < pageTotal; index++)
            {
                string structure = $"{name} compression set[{index}]";
                if (file.Length - offset < HibernationLayout.SetHeaderSize)
                {
                    Truncated(name, done, pageTotal, offset);
                    return;
                }
                uint header = BinaryPrimitives.ReadUInt32LittleEndian(file.Span(offset, HibernationLayout.SetHeaderSize));
                int descriptors = (int)(header & HibernationLayout.SetDescriptorCountMask);
                int stored = (int)((header >> HibernationLayout.SetSizeShift) & HibernationLayout.SetSizeMask);
                int type = (int)(header >> HibernationLayout.SetTypeShift);
                if (descriptors == 0)
                {
                    throw Fail.At(FormatName, structure, offset, $"header 0x{header:X8} has no page descriptors (corrupt, or the set ends after {done} of {pageTotal} pages)");
                }
                if (stored == 0)
                {
                    throw Fail.At(FormatName, structure, offset, $"header 0x{header:X8} has a stored size of 0");
                }
                if (Sets.Count >= limits.MaxHibernationSets)
                {
                    throw Fail.At(FormatName, structure, offset, $"more than {limits.MaxHibernationSets} compression sets (ParserLimits.MaxHibernationSets)");
                }
                long descriptorStart = offset + HibernationLayout.SetHeaderSize;
                int descriptorBytes = descriptors * descriptorSize;
                if (file.Length - descriptorStart < descriptorBytes)
                {
                    Truncated(name, done, pageTotal, offset);
                    return;
                }
                ReadOnlySpan<byte> table = file.Span(descriptorStart, descriptorBytes);
                int setIndex = Sets.Count;
                int extentsBefore = Extents.Count;
                int pages = 0;
                for (int d = 0; d < descriptors; d++)
                {
                    ulong value = descriptorSize == 8
                        ? BinaryPrimitives.ReadUInt64LittleEndian(table[(d * 8)..])
                        : BinaryPrimitives.ReadUInt32LittleEndian(table[(d * 4)..]);
                    int count = (int)(value & (HibernationLayout.MaxPagesPerDescriptor - 1)) + 1;
                    ulong pfn = value >> HibernationLayout.DescriptorPageBits;
                    if (pfn > maxPfn - (ulong)count)
                    {
                        throw Fail.At(FormatName, $"{structure}.descriptor[{d}]", descriptorStart + d * descriptorSize,
                            $"pages 0x{pfn:X}+{count} are beyond the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
                    }
                    if (pages + count > limits.MaxHibernationSetPages)
                    {
                        throw Fail.At(FormatName, $"{structure}.descriptor[{d}]", descriptorStart + d * descriptorSize,
                            $"the set holds more than {limits.MaxHibernationSetPages} pages (ParserLimits.MaxHibernationSetPages; Windows writes at most 16)");
                    }
                    Extents.Add(new HiberExtent(pfn, setIndex, (ushort)pages, (ushort)count));
                    pages += count;
                }
                long data = descriptorStart + descriptorBytes;
                if (file.Length - data < stored)
                {
                    Extents.RemoveRange(extentsBefore, Extents.Count - extentsBefore);
                    Truncated(name, done, pageTotal, offset);
                    return;
                }
                HiberSetKind kind = stored == pages * HibernationLayout.PageSize ? HiberSetKind.Stored
                    : type == 0 ? HiberSetKind.XpressPlain
                    : type == 1 ? HiberSetKind.Type1
                    : HiberSetKind.XpressHuffman;
                Sets.Add(data, stored, pages, kind);
                _kinds[(int)kind]++;
                PagesStored += (ulong)pages;
                done += (ulong)pages;
                offset = data + stored;
            }
            if (done > pageTotal)
            {
                metadata.Warnings.Add($"the {name} restoration set holds {done} pages, {done - pageTotal} more than its header count {pageTotal}");
            }
        }

        private void Truncated(string name, ulong done, ulong total, long offset)
            => metadata.Warnings.Add($"file is truncated: the {name} restoration set stops at 0x{offset:X} after {done} of {total} pages");
    }
}
