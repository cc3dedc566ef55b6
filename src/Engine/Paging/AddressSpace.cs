using System.Buffers.Binary;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Paging;

/// <summary>Why a virtual address did not translate.</summary>
public enum TranslationFault
{
    /// <summary>Translated.</summary>
    None,
    /// <summary>Outside the canonical address range.</summary>
    NonCanonical,
    /// <summary>An entry on the walk is not present (never mapped, or unmapped).</summary>
    NotPresent,
    /// <summary>The last-level entry is not present but holds a swap entry: the page is in swap / the page file.</summary>
    SwappedOut,
    /// <summary>An entry has reserved bits set or points outside plausible physical memory.</summary>
    InvalidEntry,
    /// <summary>A page-table page is not in the capture (a hole).</summary>
    TableNotCaptured,
}

/// <summary>A translated address.</summary>
/// <param name="PhysicalAddress">Where the byte is.</param>
/// <param name="PageSize">Size of the page that maps it (4 KiB, 2 MiB or 1 GiB).</param>
/// <param name="Writable">The R/W bit is set on every level.</param>
/// <param name="User">The U/S bit is set on every level.</param>
/// <param name="Executable">No level has the NX bit.</param>
public readonly record struct Translation(ulong PhysicalAddress, ulong PageSize, bool Writable, bool User, bool Executable);

/// <summary>A virtual address space: reads and translations through one set of page tables.</summary>
/// <remarks>Reads never throw: a short count means the next byte did not translate or is not in the capture.</remarks>
public interface IVirtualMemory
{
    /// <summary>Copies bytes from <paramref name="va"/>; returns how many were copied.</summary>
    int Read(ulong va, Span<byte> destination);

    /// <summary>Translates <paramref name="va"/>, or says why not.</summary>
    bool TryTranslate(ulong va, out Translation translation, out TranslationFault fault);
}

/// <summary>
/// The table-driven x86-64 page-table walker (4- and 5-level, 2 MiB and 1 GiB pages, NX/user/write bits),
/// with a direct-mapped translation cache (64 slots, growing to 4,096 for a busy space). Table entries come from a <see cref="PageTableCache"/> shared by every
/// address space over the same physical memory, and the walker keeps the last leaf table it reached, so translating the
/// pages of a range reads the upper levels once per 2 MiB. Safe for concurrent readers.
/// </summary>
public sealed class AddressSpace : IVirtualMemory
{
    private const ulong Present = 1UL << 0;
    private const ulong Write = 1UL << 1;
    private const ulong UserBit = 1UL << 2;
    private const ulong PageSizeBit = 1UL << 7;
    private const ulong ProtNone = 1UL << 8;      // Linux: PROT_NONE pages keep their frame with the present bit clear
    private const ulong NoExecute = 1UL << 63;
    private const int FirstCacheSlots = 64;      // a process space read for a few structures stays small (0.5 KiB)
    private const int MaxCacheSlots = 1 << 12;

    private readonly IPhysicalMemory _physical;
    private readonly PagingMode _mode;
    private CacheEntry?[] _cache = new CacheEntry?[FirstCacheSlots];
    private int _walks;
    private readonly PageTableCache _tables;
    private LeafTable? _leaf;

    // Immutable and published by reference, so concurrent readers never see a torn entry.
    private sealed record CacheEntry(ulong Page, ulong Base, ulong Size, byte Flags);

    // The leaf table (PT) that maps [Start, Start + Span) and the write/user/execute bits of the entries above it.
    private sealed record LeafTable(ulong Start, ulong Span, PageTableCache.TablePage Table, byte Flags);

    /// <summary>
    /// Creates an address space rooted at the table at physical <paramref name="directoryTableBase"/>, reading table
    /// pages through <paramref name="tables"/> (default: the cache shared by every address space over <paramref name="physical"/>).
    /// </summary>
    public AddressSpace(IPhysicalMemory physical, ulong directoryTableBase, PagingMode? mode = null, PageTableCache? tables = null)
    {
        ArgumentNullException.ThrowIfNull(physical);
        if (tables is not null && !ReferenceEquals(tables.Physical, physical))
        {
            throw new ArgumentException("the page-table cache reads a different physical memory", nameof(tables));
        }
        _physical = physical;
        _mode = mode ?? PagingMode.X64Level4;
        _tables = tables ?? PageTableCache.SharedFor(physical);
        DirectoryTableBase = directoryTableBase & _mode.AddressMask;
    }

    /// <summary>Physical address of the root table (CR3 without its flag bits).</summary>
    public ulong DirectoryTableBase { get; }

    /// <summary>The paging mode.</summary>
    public PagingMode Mode => _mode;

    /// <summary>The physical memory underneath.</summary>
    public IPhysicalMemory Physical => _physical;

    /// <summary>Where table entries are read from (shared with every address space over <see cref="Physical"/> by default).</summary>
    public PageTableCache Tables => _tables;

    /// <inheritdoc />
    public bool TryTranslate(ulong va, out Translation translation, out TranslationFault fault)
    {
        ulong page = va >> 12;
        CacheEntry?[] cache = Volatile.Read(ref _cache);
        int slot = (int)(page & (ulong)(cache.Length - 1));
        CacheEntry? hit = Volatile.Read(ref cache[slot]);
        if (hit is not null && va >= hit.Page && va - hit.Page < hit.Size)
        {
            translation = new Translation(hit.Base + (va - hit.Page), hit.Size, (hit.Flags & 1) != 0, (hit.Flags & 2) != 0, (hit.Flags & 4) != 0);
            fault = TranslationFault.None;
            return true;
        }
        if (!Walk(va, out translation, out fault))
        {
            return false;
        }
        ulong pageStart = va & ~(translation.PageSize - 1);
        byte flags = (byte)((translation.Writable ? 1 : 0) | (translation.User ? 2 : 0) | (translation.Executable ? 4 : 0));
        if (++_walks >= cache.Length && cache.Length < MaxCacheSlots)
        {
            // Grows 8x once there have been as many walks as slots (a busy space), up to 4,096 slots; entries are dropped.
            _walks = 0;
            CacheEntry?[] larger = new CacheEntry?[cache.Length * 8];
            cache = Interlocked.CompareExchange(ref _cache, larger, cache) == cache ? larger : Volatile.Read(ref _cache);
            slot = (int)(page & (ulong)(cache.Length - 1));
        }
        Volatile.Write(ref cache[slot], new CacheEntry(pageStart, translation.PhysicalAddress - (va - pageStart), translation.PageSize, flags));
        return true;
    }

    private bool Walk(ulong va, out Translation translation, out TranslationFault fault)
    {
        translation = default;
        if (!_mode.IsCanonical(va))
        {
            fault = TranslationFault.NonCanonical;
            return false;
        }
        IReadOnlyList<PagingLevel> levels = _mode.Levels;
        int first = 0;
        ulong table = DirectoryTableBase;
        bool writable = true, user = true, executable = true;
        PageTableCache.TablePage? known = null;
        LeafTable? leaf = Volatile.Read(ref _leaf);
        if (leaf is not null && (va & ~(leaf.Span - 1)) == leaf.Start)
        {
            // The last walk ended in the same leaf table: its upper levels are the same entries, so start at the leaf.
            first = levels.Count - 1;
            table = leaf.Table.Address;
            known = leaf.Table;
            writable = (leaf.Flags & 1) != 0;
            user = (leaf.Flags & 2) != 0;
            executable = (leaf.Flags & 4) != 0;
        }
        for (int i = first; i < levels.Count; i++)
        {
            PagingLevel level = levels[i];
            int offset = (int)((va >> level.Shift) & ((1UL << level.IndexBits) - 1)) * _mode.EntrySize;
            ulong entry;
            PageTableCache.TablePage? page = known;
            if (known is { } kept)
            {
                _tables.CountHit();
                entry = kept.Entry(offset);
                known = null;
            }
            else if (!_tables.TryReadEntry(table, offset, out entry, out page))
            {
                fault = TranslationFault.TableNotCaptured;
                return false;
            }
            bool last = i == levels.Count - 1;
            if (last && page is { } leafTable && i != first)
            {
                ulong span = 1UL << (level.Shift + level.IndexBits);
                byte upper = (byte)((writable ? 1 : 0) | (user ? 2 : 0) | (executable ? 4 : 0));
                Volatile.Write(ref _leaf, new LeafTable(va & ~(span - 1), span, leafTable, upper));
            }
            if ((entry & Present) == 0)
            {
                if (last && (entry & ProtNone) != 0)
                {
                    // PROT_NONE: the frame is still there.
                }
                else
                {
                    fault = last && entry != 0 ? TranslationFault.SwappedOut : TranslationFault.NotPresent;
                    return false;
                }
            }
            writable &= (entry & Write) != 0;
            user &= (entry & UserBit) != 0;
            executable &= (entry & NoExecute) == 0;
            if (last || (level.LargePageAllowed && (entry & PageSizeBit) != 0))
            {
                ulong size = 1UL << level.Shift;
                // Large-page frames are aligned to their size; bit 12 of a large-page entry is PAT, not address.
                ulong frame = entry & _mode.AddressMask & ~(size - 1);
                translation = new Translation(frame | (va & (size - 1)), size, writable, user, executable);
                fault = TranslationFault.None;
                return true;
            }
            table = entry & _mode.AddressMask;
        }
        fault = TranslationFault.InvalidEntry;
        return false;
    }

    /// <inheritdoc />
    /// <remarks>Pages that follow each other physically are read from the capture in one request.</remarks>
    public int Read(ulong va, Span<byte> destination)
    {
        int total = 0;
        while (!destination.IsEmpty)
        {
            if (!TryTranslate(va, out Translation t, out _))
            {
                break;
            }
            ulong inPage = t.PageSize - (va & (t.PageSize - 1));
            int count = (int)Math.Min((ulong)destination.Length, inPage);
            while (count < destination.Length && TryTranslate(va + (ulong)count, out Translation next, out _)
                   && next.PhysicalAddress == t.PhysicalAddress + (ulong)count)
            {
                ulong nextInPage = next.PageSize - ((va + (ulong)count) & (next.PageSize - 1));
                count = (int)Math.Min((ulong)destination.Length, (ulong)count + nextInPage);
            }
            int got = _physical.Read(t.PhysicalAddress, destination[..count]);
            total += got;
            if (got < count)
            {
                break;
            }
            va += (ulong)count;
            destination = destination[count..];
        }
        return total;
    }
}

/// <summary>Typed reads over virtual memory.</summary>
public static class VirtualMemoryExtensions
{
    /// <summary>Reads a little-endian u64.</summary>
    public static bool TryReadUInt64(this IVirtualMemory memory, ulong va, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        bool ok = memory.Read(va, b) == 8;
        value = ok ? BinaryPrimitives.ReadUInt64LittleEndian(b) : 0;
        return ok;
    }

    /// <summary>Reads a little-endian u32.</summary>
    public static bool TryReadUInt32(this IVirtualMemory memory, ulong va, out uint value)
    {
        Span<byte> b = stackalloc byte[4];
        bool ok = memory.Read(va, b) == 4;
        value = ok ? BinaryPrimitives.ReadUInt32LittleEndian(b) : 0;
        return ok;
    }

    /// <summary>Reads a NUL-terminated string of at most <paramref name="maxLength"/> bytes (ASCII/UTF-8).</summary>
    public static string? ReadCString(this IVirtualMemory memory, ulong va, int maxLength)
    {
        byte[] buffer = new byte[maxLength];
        int got = memory.Read(va, buffer);
        if (got == 0)
        {
            return null;
        }
        int nul = Array.IndexOf(buffer, (byte)0, 0, got);
        return System.Text.Encoding.UTF8.GetString(buffer, 0, nul >= 0 ? nul : got);
    }

    /// <summary>
    /// Reads a NUL-terminated UTF-16LE string of at most <paramref name="maxBytes"/> bytes (a PWSTR); null when not even
    /// the first character reads. A string cut by an unreadable page ends there.
    /// </summary>
    public static string? ReadWideCString(this IVirtualMemory memory, ulong va, int maxBytes)
    {
        byte[] buffer = new byte[maxBytes & ~1];
        int got = memory.Read(va, buffer) & ~1;
        if (got == 0)
        {
            return null;
        }
        int end = 0;
        while (end < got && (buffer[end] | buffer[end + 1]) != 0)
        {
            end += 2;
        }
        return System.Text.Encoding.Unicode.GetString(buffer, 0, end);
    }
}
