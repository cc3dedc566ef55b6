namespace CloudMem.VmStateParsers;

/// <summary>
/// A bounded cache of 4 KiB pages keyed by their page-aligned address (physical, or a file offset): two-way
/// set-associative, the newer page of a set in way 0, so eviction is a reference move and memory never grows past the
/// budget. Used for page-table pages (the walker's shared cache) and for small random reads of a mapped capture.
/// </summary>
/// <remarks>
/// Pages are immutable once added (callers never write to a page they added or got) and published by reference, so
/// concurrent readers never see a torn page and need no lock; a race between two adds only loses a cache entry. Only
/// for data that never changes while it is cached (captures are read-only).
/// </remarks>
public sealed class PageCache
{
    /// <summary>Bytes of a page.</summary>
    public const int PageBytes = 4096;

    private readonly Entry?[] _ways;   // set s = ways [2s] (newer) and [2s + 1] (older)
    private readonly int _setMask;

    /// <summary>A cache of at most <paramref name="budgetBytes"/> of pages (below two pages: holds nothing).</summary>
    public PageCache(int budgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(budgetBytes);
        int sets = budgetBytes / PageBytes / 2;
        sets = sets == 0 ? 0 : 1 << (31 - System.Numerics.BitOperations.LeadingZeroCount((uint)sets));
        _ways = new Entry?[sets * 2];
        _setMask = Math.Max(0, sets - 1);
    }

    /// <summary>Most pages held at once.</summary>
    public int Capacity => _ways.Length;

    /// <summary>Pages held now (a pass over the slots).</summary>
    public int Count => _ways.Count(e => e is not null);

    /// <summary>The page at <paramref name="address"/> (page-aligned) when cached, else null. Never write to it.</summary>
    public byte[]? TryGet(ulong address)
    {
        if (_ways.Length == 0)
        {
            return null;
        }
        int set = Set(address);
        Entry? newer = Volatile.Read(ref _ways[set]);
        if (newer is not null && newer.Address == address)
        {
            return newer.Bytes;
        }
        Entry? older = Volatile.Read(ref _ways[set + 1]);
        return older is not null && older.Address == address ? older.Bytes : null;
    }

    /// <summary>Adds the page at <paramref name="address"/> (page-aligned, <see cref="PageBytes"/> long); the cache keeps the array.</summary>
    public void Add(ulong address, byte[] page)
    {
        ArgumentNullException.ThrowIfNull(page);
        ArgumentOutOfRangeException.ThrowIfNotEqual(page.Length, PageBytes);
        if (_ways.Length == 0)
        {
            return;
        }
        int set = Set(address);
        Volatile.Write(ref _ways[set + 1], Volatile.Read(ref _ways[set]));
        Volatile.Write(ref _ways[set], new Entry(address, page));
    }

    // Pages are page-aligned and clustered, so their low frame bits alone collide; a multiplicative mix spreads them.
    private int Set(ulong address) => (int)((unchecked((address >> 12) * 0x9E3779B97F4A7C15UL) >> 40) & (uint)_setMask) * 2;

    private sealed record Entry(ulong Address, byte[] Bytes);
}
