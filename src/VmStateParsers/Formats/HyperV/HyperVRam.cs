using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// Guest RAM of a saved state: the <c>/savedstate/RamMemoryBlock%d</c> descriptors map guest page ranges onto the
/// sequence of "memory block pages"; page m of that sequence is page m % 256 of the value <c>/savedstate/RamBlock{m / 256}</c>.
/// A 1 MiB value (or, as Microsoft's own dump writer leaves the last block of a range, exactly the pages the
/// descriptors use) is raw and becomes direct runs; a shorter value is compressed and becomes decoded runs, one per
/// (block, descriptor) piece, decoded by <see cref="TryDecode"/>.
/// </summary>
/// <remarks>The decoder is safe for concurrent callers (it keeps no mutable state).</remarks>
internal sealed class HyperVRam : IPageDecoder
{
    private readonly IByteSource _file;
    private readonly List<Segment> _segments = [];

    private HyperVRam(IByteSource file) => _file = file;

    private readonly record struct Segment(ulong PhysicalAddress, int FirstPage, int Pages, long ValueOffset, int ValueLength);

    private readonly record struct Descriptor(int Index, ulong GpaPage, ulong MbpStart, ulong Pages, long DescribedAt);

    private readonly record struct Block(ulong Index, HyperVKey Key);

    public int MaxUnitSize => HyperVLayout.RamBlockSize;

    public int Descriptors { get; private set; }
    public int RawBlocks { get; private set; }
    public int CompressedBlocks { get; private set; }
    public ulong MissingPages { get; private set; }

    /// <summary>Maps the RAM keys of <paramref name="storage"/> into <paramref name="builder"/>; null when the file holds no guest RAM.</summary>
    public static HyperVRam? Map(HyperVStorage storage, IByteSource file, RunMapBuilder builder, CaptureMetadata metadata)
    {
        HyperVKey? savedState = HyperVStorage.Child(storage.Roots, HyperVLayout.SavedStateNode);
        if (savedState?.Children is null)
        {
            return null;
        }
        var descriptorKeys = new Dictionary<string, HyperVKey>(StringComparer.Ordinal);
        var blocks = new List<Block>();
        foreach (HyperVKey key in savedState.Children)
        {
            if (key.Name.StartsWith(HyperVLayout.RamMemoryBlockPrefix, StringComparison.Ordinal))
            {
                descriptorKeys.TryAdd(key.Name, key);
            }
            else if (key.Name.StartsWith(HyperVLayout.RamBlockPrefix, StringComparison.Ordinal)
                && ulong.TryParse(key.Name.AsSpan(HyperVLayout.RamBlockPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out ulong index))
            {
                blocks.Add(new Block(index, key));
            }
        }
        var descriptors = new List<Descriptor>();
        for (int i = 0; descriptorKeys.TryGetValue(HyperVLayout.RamMemoryBlockPrefix + i.ToString(CultureInfo.InvariantCulture), out HyperVKey? key); i++)
        {
            descriptors.Add(ReadDescriptor(storage, key, i));
        }
        if (descriptors.Count == 0)
        {
            return null;
        }
        blocks.Sort(static (a, b) => a.Index.CompareTo(b.Index));
        for (int i = 1; i < blocks.Count; i++)
        {
            if (blocks[i].Index == blocks[i - 1].Index)
            {
                throw Fail.At(HyperVStorage.FormatName, $"key '{blocks[i].Key.Path}'", blocks[i].Key.EntryFileOffset, "a second RamBlock key with the same number");
            }
        }
        var ram = new HyperVRam(file) { Descriptors = descriptors.Count };
        // How many pages of each block the descriptors use (a shorter raw block is legal only if it holds exactly those).
        var used = new Dictionary<ulong, int>();
        foreach (Descriptor d in descriptors)
        {
            foreach ((int b, int first, int pages) in Pieces(blocks, d))
            {
                used[blocks[b].Index] = Math.Max(used.GetValueOrDefault(blocks[b].Index), first + pages);
            }
        }
        var kinds = new Dictionary<ulong, bool?>(); // true raw, false compressed, null unusable
        int unusable = 0;
        foreach (Block block in blocks)
        {
            if (!used.TryGetValue(block.Index, out int pagesUsed))
            {
                continue;
            }
            HyperVKey key = block.Key;
            bool? kind;
            if (key.Type != HyperVKeyType.Array || !key.ValueInFile || key.ValueLength == 0 || key.ValueLength > HyperVLayout.RamBlockSize)
            {
                kind = null;
                unusable++;
            }
            else
            {
                kind = key.ValueLength == HyperVLayout.RamBlockSize || key.ValueLength == (long)pagesUsed * HyperVLayout.PageSize;
                if (kind == true)
                {
                    ram.RawBlocks++;
                }
                else
                {
                    ram.CompressedBlocks++;
                }
            }
            kinds[block.Index] = kind;
        }
        if (unusable > 0)
        {
            metadata.Warnings.Add($"{unusable} RamBlock values are not binary, empty, larger than 1 MiB or outside the file; their pages are holes");
        }
        descriptors.Sort(static (a, b) => a.GpaPage.CompareTo(b.GpaPage));
        ulong mappedPages = 0;
        foreach (Descriptor d in descriptors)
        {
            foreach ((int b, int first, int pages) in Pieces(blocks, d))
            {
                Block block = blocks[b];
                if (kinds[block.Index] is not { } raw)
                {
                    continue;
                }
                ulong mbp = (block.Index * HyperVLayout.PagesPerRamBlock) + (ulong)first;
                ulong pa = (d.GpaPage + (mbp - d.MbpStart)) * HyperVLayout.PageSize;
                ulong length = (ulong)pages * HyperVLayout.PageSize;
                string structure = $"RamMemoryBlock{d.Index}";
                if (raw)
                {
                    builder.Add(new PhysicalRun(pa, length, block.Key.ValueOffset + ((long)first * HyperVLayout.PageSize)), structure, d.DescribedAt);
                }
                else
                {
                    builder.Add(new PhysicalRun(pa, length, ram._segments.Count, RunStorage.Decoded), structure, d.DescribedAt);
                    ram._segments.Add(new Segment(pa, first, pages, block.Key.ValueOffset, (int)block.Key.ValueLength));
                }
                mappedPages += (ulong)pages;
            }
        }
        ulong declared = 0;
        foreach (Descriptor d in descriptors)
        {
            declared += d.Pages;
        }
        ram.MissingPages = declared - mappedPages;
        if (ram.MissingPages > 0)
        {
            metadata.Warnings.Add($"{ram.MissingPages} of {declared} guest pages the RamMemoryBlock descriptors declare have no usable RamBlock data; they read as holes");
        }
        return ram;
    }

    private static Descriptor ReadDescriptor(HyperVStorage storage, HyperVKey key, int index)
    {
        string structure = $"key '{key.Path}'";
        ReadOnlySpan<byte> value = storage.Value(key);
        if (key.Type != HyperVKeyType.Array || value.Length < HyperVLayout.MemoryBlockNodeOffset)
        {
            throw Fail.At(HyperVStorage.FormatName, structure, key.EntryFileOffset,
                $"a RAM descriptor must be a binary value of at least {HyperVLayout.MemoryBlockNodeOffset} bytes (this is {HyperVStorage.TypeName(key)}, {value.Length} bytes)");
        }
        ulong pages = BinaryPrimitives.ReadUInt64LittleEndian(value[HyperVLayout.MemoryBlockPageCountOffset..]);
        ulong mbpStart = BinaryPrimitives.ReadUInt64LittleEndian(value[HyperVLayout.MemoryBlockMbpStartOffset..]);
        ulong gpaPage = BinaryPrimitives.ReadUInt64LittleEndian(value[HyperVLayout.MemoryBlockGpaStartOffset..]);
        const ulong MaxPages = 1UL << 52; // 2^64 bytes / 4096
        if (pages >= MaxPages || gpaPage >= MaxPages - pages || mbpStart >= MaxPages - pages)
        {
            throw Fail.At(HyperVStorage.FormatName, structure, key.EntryFileOffset,
                $"{pages} pages from guest page 0x{gpaPage:X} / block page 0x{mbpStart:X} overflow the address space");
        }
        return new Descriptor(index, gpaPage, mbpStart, pages, key.EntryFileOffset);
    }

    /// <summary>
    /// The parts of existing RamBlocks a descriptor uses: (index into <paramref name="blocks"/>, first page, page count),
    /// ascending. Only blocks that exist are visited, so a hostile page count costs nothing.
    /// </summary>
    private static IEnumerable<(int Block, int FirstPage, int Pages)> Pieces(List<Block> blocks, Descriptor d)
    {
        if (d.Pages == 0)
        {
            yield break;
        }
        ulong firstBlock = d.MbpStart / HyperVLayout.PagesPerRamBlock;
        ulong end = d.MbpStart + d.Pages;
        ulong lastBlock = (end - 1) / HyperVLayout.PagesPerRamBlock;
        int lo = 0;
        int hi = blocks.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (blocks[mid].Index < firstBlock)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        for (int b = lo; b < blocks.Count && blocks[b].Index <= lastBlock; b++)
        {
            ulong blockStart = blocks[b].Index * HyperVLayout.PagesPerRamBlock;
            ulong from = Math.Max(blockStart, d.MbpStart);
            ulong to = Math.Min(blockStart + HyperVLayout.PagesPerRamBlock, end);
            yield return (b, (int)(from - blockStart), (int)(to - from));
        }
    }

    public bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit)
    {
        if (run.FileOffset < 0 || run.FileOffset >= _segments.Count)
        {
            unit = default;
            return false;
        }
        Segment s = _segments[(int)run.FileOffset];
        unit = new DecodeUnit(run.FileOffset, s.PhysicalAddress, s.Pages * HyperVLayout.PageSize);
        return true;
    }

    public bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem)
    {
        Segment s = _segments[(int)unit.Key];
        byte[] buffer = ArrayPool<byte>.Shared.Rent(HyperVLayout.RamBlockSize);
        try
        {
            Span<byte> block = buffer.AsSpan(0, HyperVLayout.RamBlockSize);
            int decoded = DecodeBlock(_file.Span(s.ValueOffset, s.ValueLength), block, out problem);
            int needed = (s.FirstPage + s.Pages) * HyperVLayout.PageSize;
            if (decoded < needed)
            {
                problem = $"compressed RamBlock at file offset 0x{s.ValueOffset:X}: {problem ?? $"decodes to {decoded} bytes, {needed} needed"}";
                return false;
            }
            block.Slice(s.FirstPage * HyperVLayout.PageSize, destination.Length).CopyTo(destination);
            problem = null;
            return true;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Decodes a compressed RamBlock token stream [unverified against a real file: the token format is community reverse
    /// engineering, volatility3 PR #1969]. Tokens are u32: end; one page filled with an 8-byte pattern; a run of pages
    /// filled with a pattern; an explicit {output length, payload length, payload} (raw when equal, Xpress otherwise);
    /// any other value N is one page of N stored bytes (raw when N is 4096, plain-LZ77 Xpress otherwise).
    /// </summary>
    /// <returns>Bytes decoded (at the first problem, what was decoded before it, with <paramref name="problem"/> set).</returns>
    internal static int DecodeBlock(ReadOnlySpan<byte> source, Span<byte> destination, out string? problem)
    {
        problem = null;
        int pos = 0;
        int output = 0;
        while (output < destination.Length && source.Length - pos >= 4)
        {
            uint token = BinaryPrimitives.ReadUInt32LittleEndian(source[pos..]);
            int tokenAt = pos;
            pos += 4;
            Span<byte> rest = destination[output..];
            switch (token)
            {
                case HyperVLayout.TokenEnd:
                    return output;
                case HyperVLayout.TokenFillPage:
                case HyperVLayout.TokenFillRun:
                {
                    int extra = token == HyperVLayout.TokenFillRun ? 12 : 8;
                    if (source.Length - pos < extra)
                    {
                        problem = $"fill token at 0x{tokenAt:X} is truncated";
                        return output;
                    }
                    ReadOnlySpan<byte> pattern = source.Slice(pos, 8);
                    uint pages = token == HyperVLayout.TokenFillRun ? BinaryPrimitives.ReadUInt32LittleEndian(source[(pos + 8)..]) : 1;
                    pos += extra;
                    if (pages > (uint)(rest.Length / HyperVLayout.PageSize))
                    {
                        problem = $"fill token at 0x{tokenAt:X} writes {pages} pages past the 1 MiB block";
                        return output;
                    }
                    int bytes = (int)pages * HyperVLayout.PageSize;
                    for (int i = 0; i < bytes; i += 8)
                    {
                        pattern.CopyTo(rest[i..]);
                    }
                    output += bytes;
                    break;
                }
                case HyperVLayout.TokenExplicit:
                {
                    if (source.Length - pos < 8)
                    {
                        problem = $"explicit token at 0x{tokenAt:X} is truncated";
                        return output;
                    }
                    uint outLength = BinaryPrimitives.ReadUInt32LittleEndian(source[pos..]);
                    uint payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(source[(pos + 4)..]);
                    pos += 8;
                    if (outLength > (uint)rest.Length || payloadLength > (uint)(source.Length - pos))
                    {
                        problem = $"explicit token at 0x{tokenAt:X}: {outLength} bytes out of {payloadLength} stored do not fit";
                        return output;
                    }
                    if (!Unpack(source.Slice(pos, (int)payloadLength), rest[..(int)outLength]))
                    {
                        problem = $"explicit token at 0x{tokenAt:X}: Xpress data does not decode to {outLength} bytes";
                        return output;
                    }
                    pos += (int)payloadLength;
                    output += (int)outLength;
                    break;
                }
                default:
                {
                    if (token > (uint)(source.Length - pos) || rest.Length < HyperVLayout.PageSize)
                    {
                        problem = $"page token at 0x{tokenAt:X}: {token} stored bytes run past the value or the block";
                        return output;
                    }
                    if (!Unpack(source.Slice(pos, (int)token), rest[..HyperVLayout.PageSize]))
                    {
                        problem = $"page token at 0x{tokenAt:X}: Xpress data does not decode to a 4096-byte page";
                        return output;
                    }
                    pos += (int)token;
                    output += HyperVLayout.PageSize;
                    break;
                }
            }
        }
        return output;
    }

    private static bool Unpack(ReadOnlySpan<byte> stored, Span<byte> destination)
    {
        if (stored.Length == destination.Length)
        {
            stored.CopyTo(destination);
            return true;
        }
        return XpressLz77.Decompress(stored, destination) == destination.Length;
    }
}
