using System.Runtime.CompilerServices;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Paging;

/// <summary>
/// A bounded cache of whole page-table pages (PML5/PML4/PDPT/PD/PT, 4 KiB each) keyed by physical address, shared by
/// every <see cref="AddressSpace"/> over the same physical memory: the kernel's and every process's walks read the
/// tables they share (the kernel half of every PML4 points at the same PDPTs) once, and a walk over a range reads its
/// PT page once instead of once per page.
/// </summary>
/// <remarks>
/// <para>The pages are held by a <see cref="PageCache"/> (two-way set-associative, lock-free, bounded).</para>
/// <para>Correct because captures never change while open (<see cref="IPhysicalMemory"/>): a cached page is the page.
/// A table page that is not wholly in the capture (a hole, a run ending inside it, an undecodable page) is never cached:
/// its entries are read one by one from the capture, so a walk faults exactly where it did without the cache.</para>
/// </remarks>
public sealed class PageTableCache
{
    /// <summary>Bytes of a page-table page.</summary>
    public const int PageBytes = PageCache.PageBytes;

    /// <summary>
    /// The default budget: 512 table pages (2 MiB). The kernel's tables and the upper levels every process shares
    /// are a few dozen pages; the rest are processes' own tables, most walked a few times each (a larger budget only
    /// raised peak RSS on a 500-process image).
    /// </summary>
    public const int DefaultBudgetBytes = 2 << 20;

    private static readonly ConditionalWeakTable<IPhysicalMemory, PageTableCache> s_shared = [];

    private readonly IPhysicalMemory _physical;
    private readonly PageCache _pages;
    private long _hits;
    private long _misses;
    private long _uncached;

    /// <summary>A cache of at most <paramref name="budgetBytes"/> of table pages over <paramref name="physical"/> (0: no cache).</summary>
    public PageTableCache(IPhysicalMemory physical, int budgetBytes = DefaultBudgetBytes)
    {
        ArgumentNullException.ThrowIfNull(physical);
        _physical = physical;
        _pages = new PageCache(budgetBytes);
    }

    /// <summary>The cache shared by every address space over <paramref name="physical"/> (lives as long as it does).</summary>
    public static PageTableCache SharedFor(IPhysicalMemory physical)
    {
        ArgumentNullException.ThrowIfNull(physical);
        return s_shared.GetValue(physical, static p => new PageTableCache(p));
    }

    /// <summary>A cache that holds nothing: every entry is read from the capture (comparisons and tests).</summary>
    public static PageTableCache Disabled(IPhysicalMemory physical) => new(physical, 0);

    /// <summary>The physical memory the pages are read from.</summary>
    public IPhysicalMemory Physical => _physical;

    /// <summary>Most table pages held at once.</summary>
    public int Capacity => _pages.Capacity;

    /// <summary>Entries read from a page that was already cached (or kept by a walker).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Table pages read from the capture (one 4 KiB read each).</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Entries read one by one because their table page is not wholly in the capture (or the cache is disabled).</summary>
    public long Uncached => Interlocked.Read(ref _uncached);

    /// <summary>Table pages held now.</summary>
    public int Count => _pages.Count;

    /// <summary>One line for --stats.</summary>
    public override string ToString()
        => $"page-table cache: {Hits} entries from cached pages, {Misses} table pages read (4 KiB each), {Uncached} entries read alone, {Count} of {Capacity} pages held";

    /// <summary>
    /// The whole table page at <paramref name="tableAddress"/> (4 KiB aligned), from the cache or read now; null when
    /// the page is not wholly in the capture or the cache is disabled (then read the entry alone).
    /// </summary>
    internal TablePage? Page(ulong tableAddress)
    {
        if (_pages.Capacity == 0)
        {
            return null;
        }
        if (_pages.TryGet(tableAddress) is byte[] cached)
        {
            Interlocked.Increment(ref _hits);
            return new TablePage(tableAddress, cached);
        }
        byte[] bytes = GC.AllocateUninitializedArray<byte>(PageBytes);
        if (_physical.Read(tableAddress, bytes) != PageBytes)
        {
            return null;
        }
        Interlocked.Increment(ref _misses);
        _pages.Add(tableAddress, bytes);
        return new TablePage(tableAddress, bytes);
    }

    /// <summary>Reads the 8-byte entry at byte <paramref name="entryOffset"/> of the table at <paramref name="tableAddress"/>, and the cached page it came from.</summary>
    internal bool TryReadEntry(ulong tableAddress, int entryOffset, out ulong entry, out TablePage? page)
    {
        page = Page(tableAddress);
        if (page is { } whole)
        {
            entry = whole.Entry(entryOffset);
            return true;
        }
        Interlocked.Increment(ref _uncached);
        Span<byte> bytes = stackalloc byte[8];
        bool ok = _physical.Read(tableAddress + (ulong)entryOffset, bytes) == 8;
        entry = ok ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes) : 0;
        return ok;
    }

    /// <summary>Counts an entry read from a page a walker kept (see <see cref="AddressSpace"/>'s leaf-table hint).</summary>
    internal void CountHit() => Interlocked.Increment(ref _hits);

    /// <summary>One whole table page (the cache's immutable bytes).</summary>
    internal readonly record struct TablePage(ulong Address, byte[] Bytes)
    {
        /// <summary>The little-endian entry at <paramref name="offset"/> (a multiple of 8 below 4096).</summary>
        public ulong Entry(int offset) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(Bytes.AsSpan(offset, 8));
    }
}
