using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Hibernation;

/// <summary>How a compression set's data is stored.</summary>
internal enum HiberSetKind : byte
{
    /// <summary>Type bits 0: Xpress plain LZ77 (both peers agree).</summary>
    XpressPlain = 0,
    /// <summary>Type bits 1: Xpress Huffman for LeechCore, plain LZ77 for Volatility 3; we try Huffman, then plain.</summary>
    Type1 = 1,
    /// <summary>Type bits 2 or 3: Xpress LZ77+Huffman.</summary>
    XpressHuffman = 2,
    /// <summary>Stored size equals pages x 4096: the pages are stored as-is, whatever the type bits say.</summary>
    Stored = 3,
}

/// <summary>Compact table of compression sets (struct of arrays): where the data is, how big, how many pages, which codec.</summary>
internal sealed class HiberSetTable
{
    private long[] _data = new long[256];
    private int[] _stored = new int[256];
    private ushort[] _pages = new ushort[256];
    private HiberSetKind[] _kind = new HiberSetKind[256];

    public int Count { get; private set; }

    public int MaxPages { get; private set; }

    public int Add(long dataOffset, int stored, int pages, HiberSetKind kind)
    {
        if (Count == _data.Length)
        {
            int grow = _data.Length * 2;
            Array.Resize(ref _data, grow);
            Array.Resize(ref _stored, grow);
            Array.Resize(ref _pages, grow);
            Array.Resize(ref _kind, grow);
        }
        _data[Count] = dataOffset;
        _stored[Count] = stored;
        _pages[Count] = (ushort)pages;
        _kind[Count] = kind;
        MaxPages = Math.Max(MaxPages, pages);
        return Count++;
    }

    public long Data(int i) => _data[i];
    public int Stored(int i) => _stored[i];
    public int Pages(int i) => _pages[i];
    public HiberSetKind Kind(int i) => _kind[i];
}

/// <summary>
/// A stretch of physical pages held by one page descriptor: <see cref="Pages"/> pages from <see cref="Pfn"/>, stored
/// as pages <see cref="PageInSet"/>.. of compression set <see cref="Set"/>. Sorted by PFN after parsing.
/// </summary>
internal readonly record struct HiberExtent(ulong Pfn, int Set, ushort PageInSet, ushort Pages) : IComparable<HiberExtent>
{
    public ulong EndPfn => Pfn + Pages;

    public int CompareTo(HiberExtent other)
    {
        int c = Pfn.CompareTo(other.Pfn);
        return c != 0 ? c : Set.CompareTo(other.Set);
    }
}

/// <summary>
/// Decodes the pages of one extent (one page descriptor's pages, at most 16): decompresses the extent's compression
/// set (at most <see cref="ParserLimits.MaxHibernationSetPages"/> pages) and copies the extent's slice. The last set
/// decoded is remembered per thread, so reading the extents of one set in turn decompresses it once; the bounded
/// cache of decoded extents is <see cref="RunMappedMemory"/>'s. A decoded run's key is the index of its first extent.
/// </summary>
internal sealed class HibernationDecoder(IByteSource file, HiberSetTable sets, HiberExtent[] extents) : IPageDecoder
{
    [ThreadStatic]
    private static SetMemo? t_memo;
    private static long s_nextId;

    // The per-thread memo names its decoder by id, not by reference, so it never keeps a closed capture alive.
    private readonly long _id = Interlocked.Increment(ref s_nextId);

    public int MaxUnitSize => HibernationLayout.MaxPagesPerDescriptor * HibernationLayout.PageSize;

    public bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit)
    {
        ulong pfn = physicalAddress / HibernationLayout.PageSize;
        int lo = (int)run.FileOffset;
        int hi = extents.Length - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (extents[mid].Pfn <= pfn)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        if (found < 0 || pfn >= extents[found].EndPfn)
        {
            unit = default;
            return false;
        }
        HiberExtent e = extents[found];
        unit = new DecodeUnit(found, e.Pfn * HibernationLayout.PageSize, e.Pages * HibernationLayout.PageSize);
        return true;
    }

    public bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem)
    {
        HiberExtent e = extents[(int)unit.Key];
        SetMemo memo = t_memo ??= new SetMemo();
        if (memo.Owner != _id || memo.Set != e.Set)
        {
            memo.Owner = 0;
            int size = sets.Pages(e.Set) * HibernationLayout.PageSize;
            if (memo.Buffer.Length < size)
            {
                memo.Buffer = new byte[Math.Max(size, sets.MaxPages * HibernationLayout.PageSize)];
            }
            if (!DecodeSet(e.Set, memo.Buffer.AsSpan(0, size), out problem))
            {
                problem = $"{problem} (physical 0x{unit.PhysicalAddress:X})";
                return false;
            }
            memo.Owner = _id;
            memo.Set = e.Set;
        }
        memo.Buffer.AsSpan(e.PageInSet * HibernationLayout.PageSize, destination.Length).CopyTo(destination);
        problem = null;
        return true;
    }

    /// <summary>Decompresses set <paramref name="set"/> into exactly <paramref name="destination"/> (its pages x 4096).</summary>
    internal bool DecodeSet(int set, Span<byte> destination, out string? problem)
    {
        long data = sets.Data(set);
        int storedLength = sets.Stored(set);
        ReadOnlySpan<byte> stored = file.Span(data, storedLength);
        problem = null;
        if (stored.Length != storedLength)
        {
            problem = $"hiberfil compression set {set}: data 0x{data:X}+0x{storedLength:X} is not inside the file";
            return false;
        }
        int produced;
        string codec;
        switch (sets.Kind(set))
        {
            case HiberSetKind.Stored:
                stored.CopyTo(destination);
                return true;
            case HiberSetKind.XpressPlain:
                codec = "Xpress LZ77";
                produced = XpressLz77.Decompress(stored, destination);
                break;
            case HiberSetKind.XpressHuffman:
                codec = "Xpress Huffman";
                produced = XpressHuffman.Decompress(stored, destination);
                break;
            default:
                codec = "Xpress Huffman or LZ77 (type 1)";
                produced = XpressHuffman.Decompress(stored, destination);
                if (produced != destination.Length)
                {
                    produced = XpressLz77.Decompress(stored, destination);
                }
                break;
        }
        if (produced == destination.Length)
        {
            return true;
        }
        problem = produced < 0
            ? $"hiberfil compression set {set} at 0x{data:X}: corrupt {codec} data"
            : $"hiberfil compression set {set} at 0x{data:X}: {codec} data decodes to {produced} bytes, expected {destination.Length}";
        return false;
    }

    private sealed class SetMemo
    {
        public long Owner;
        public int Set = -1;
        public byte[] Buffer = [];
    }
}
