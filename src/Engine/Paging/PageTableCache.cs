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
/// <para>Two-way set-associative: a set holds the last two pages filled into it (the newer in way 0), so eviction is
/// a reference move and memory never grows past the budget. Pages are immutable once published by reference, so
/// concurrent readers never see a torn page; a race between two fills only loses a cache entry.</para>
/// <para>Correct because captures never change while open (<see cref="IPhysicalMemory"/>): a cached page is the page.
/// A table page that is not wholly in the capture (a hole, a run ending inside it, an undecodable page) is never cached:
/// its entries are read one by one from the capture, so a walk faults exactly where it did without the cache.</para>
/// </remarks>
public sealed class PageTableCache
{
    /// <summary>Bytes of a page-table page.</summary>
    public const int PageBytes = 4096;

    /// <summary>The default budget: 2,048 table pages (8 MiB), far more than the tables a plugin walks.</summary>
    public const int DefaultBudgetBytes = 8 << 20;

    private static readonly ConditionalWeakTable<IPhysicalMemory, PageTableCache> s_shared = [];

    private readonly IPhysicalMemory _physical;
    private readonly TablePage?[] _ways;   // set s = ways [2s] (newer) and [2s + 1] (older); empty when disabled
    private readonly int _setMask;
    private long _hits;
    private long _misses;
    private long _uncached;

    /// <summary>A cache of at most <paramref name="budgetBytes"/> of table pages over <paramref name="physical"/> (0: no cache).</summary>
    public PageTableCache(IPhysicalMemory physical, int budgetBytes = DefaultBudgetBytes)
    {
        ArgumentNullException.ThrowIfNull(physical);
        ArgumentOutOfRangeException.ThrowIfNegative(budgetBytes);
        _physical = physical;
        int sets = budgetBytes / PageBytes / 2;
        sets = sets == 0 ? 0 : 1 << (31 - System.Numerics.BitOperations.LeadingZeroCount((uint)sets));
        _ways = new TablePage?[sets * 2];
        _setMask = Math.Max(0, sets - 1);
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
    public int Capacity => _ways.Length;

    /// <summary>Entries read from a page that was already cached (or kept by a walker).</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Table pages read from the capture (one 4 KiB read each).</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Entries read one by one because their table page is not wholly in the capture (or the cache is disabled).</summary>
    public long Uncached => Interlocked.Read(ref _uncached);

    /// <summary>Table pages held now (counts the slots, so it costs a pass over them).</summary>
    public int Count
    {
        get
        {
            int count = 0;
            foreach (TablePage? page in _ways)
            {
                count += page is null ? 0 : 1;
            }
            return count;
        }
    }

    /// <summary>One line for --stats.</summary>
    public override string ToString()
        => $"page-table cache: {Hits} entries from cached pages, {Misses} table pages read (4 KiB each), {Uncached} entries read alone, {Count} of {Capacity} pages held";

    /// <summary>
    /// The whole table page at <paramref name="tableAddress"/> (4 KiB aligned), from the cache or read now; null when
    /// the page is not wholly in the capture or the cache is disabled (then read the entry alone).
    /// </summary>
    internal TablePage? Page(ulong tableAddress)
    {
        if (_ways.Length == 0)
        {
            return null;
        }
        int set = (int)(Mix(tableAddress >> 12) & (uint)_setMask) * 2;
        TablePage? newer = Volatile.Read(ref _ways[set]);
        if (newer is not null && newer.Address == tableAddress)
        {
            Interlocked.Increment(ref _hits);
            return newer;
        }
        TablePage? older = Volatile.Read(ref _ways[set + 1]);
        if (older is not null && older.Address == tableAddress)
        {
            Interlocked.Increment(ref _hits);
            return older;
        }
        byte[] bytes = GC.AllocateUninitializedArray<byte>(PageBytes);
        if (_physical.Read(tableAddress, bytes) != PageBytes)
        {
            return null;
        }
        Interlocked.Increment(ref _misses);
        var page = new TablePage(tableAddress, bytes);
        Volatile.Write(ref _ways[set + 1], newer);
        Volatile.Write(ref _ways[set], page);
        return page;
    }

    /// <summary>Reads the 8-byte entry at byte <paramref name="entryOffset"/> of the table at <paramref name="tableAddress"/>, and the cached page it came from.</summary>
    internal bool TryReadEntry(ulong tableAddress, int entryOffset, out ulong entry, out TablePage? page)
    {
        page = Page(tableAddress);
        if (page is not null)
        {
            entry = page.Entry(entryOffset);
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

    // Table pages are allocated page-aligned, so their low frame bits alone cluster; a multiplicative mix spreads them.
    private static ulong Mix(ulong frame) => unchecked(frame * 0x9E3779B97F4A7C15UL) >> 40;

    /// <summary>One cached table page: immutable once published.</summary>
    internal sealed class TablePage(ulong address, byte[] bytes)
    {
        /// <summary>Physical address of the page.</summary>
        public ulong Address { get; } = address;

        /// <summary>The little-endian entry at <paramref name="offset"/> (a multiple of 8 below 4096).</summary>
        public ulong Entry(int offset) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(offset, 8));
    }
}
