using System.Buffers.Binary;
using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// The physical memory of a built image and the means to lay things out in it: page allocation (data pages from the top
/// down, so that virtual and physical order differ), x64 4-level page tables, and writes through any address space.
/// </summary>
public sealed class PhysicalImage
{
    public const int Page = 0x1000;
    public const ulong TwoMiB = 0x200000;
    public const ulong Present = 1, Write = 2, User = 4, Accessed = 0x20, Dirty = 0x40, LargePage = 0x80, NoExecute = 1UL << 63;
    private const ulong AddressMask = 0x000FFFFFFFFFF000;

    private ulong _nextTable;
    private readonly ulong _tableLimit;
    private ulong _nextData;
    private readonly List<(ulong Start, ulong End)> _reserved = [];

    /// <param name="size">Size of the image in bytes.</param>
    /// <param name="tableStart">First physical page for page tables.</param>
    /// <param name="tableLimit">End of the page-table area (tables overflow into data pages after it).</param>
    public PhysicalImage(long size, ulong tableStart, ulong tableLimit)
    {
        if (size > Array.MaxLength || size < 16 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(size), "between 16 MiB and 2 GiB");
        }
        Bytes = new byte[size];
        _nextTable = tableStart;
        _tableLimit = tableLimit;
        _nextData = (ulong)size - Page;
    }

    public byte[] Bytes { get; }

    /// <summary>Lowest data page handed out so far.</summary>
    public ulong DataLow => _nextData + Page;

    /// <summary>Keeps [start, start+length) out of every later allocation (the kernel image, a fixed DTB).</summary>
    public void Reserve(ulong start, ulong length) => _reserved.Add((start, start + length));

    private (ulong Start, ulong End)? Overlap(ulong start, ulong end)
    {
        foreach ((ulong s, ulong e) in _reserved)
        {
            if (start < e && s < end)
            {
                return (s, e);
            }
        }
        return null;
    }

    /// <summary>Pages no allocation has handed out and no reservation covers (the rest of the page-table area and the gap
    /// below the lowest data page): what <c>--dense</c> fills with data so that a scan reads real bytes in most pages.</summary>
    public IEnumerable<ulong> FreePages()
    {
        for (ulong pa = _nextTable; pa + Page <= DataLow; pa += Page)
        {
            if (Overlap(pa, pa + Page) is null)
            {
                yield return pa;
            }
        }
    }

    /// <summary>A zeroed page-table page.</summary>
    public ulong AllocTable()
    {
        while (_nextTable + Page <= _tableLimit)
        {
            ulong pa = _nextTable;
            _nextTable += Page;
            if (Overlap(pa, pa + Page) is null)
            {
                return pa;
            }
        }
        return AllocData();
    }

    /// <summary>A data page (top down).</summary>
    public ulong AllocData() => AllocContiguous(1);

    /// <summary><paramref name="pages"/> physically contiguous pages; returns the lowest.</summary>
    public ulong AllocContiguous(int pages)
    {
        ulong bytes = (ulong)pages * Page;
        while (true)
        {
            if (_nextData + Page < bytes || _nextData + Page - bytes < _tableLimit)
            {
                throw new InvalidOperationException("image full: make it bigger");
            }
            ulong low = _nextData + Page - bytes;
            if (Overlap(low, low + bytes) is (ulong start, _))
            {
                _nextData = start - Page;          // continue below the reserved range
                continue;
            }
            _nextData = low - Page;
            return low;
        }
    }

    public void Put64(ulong pa, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Bytes.AsSpan(checked((int)pa)), value);

    public ulong Get64(ulong pa) => BinaryPrimitives.ReadUInt64LittleEndian(Bytes.AsSpan(checked((int)pa)));

    private static int Index(ulong va, int shift) => (int)((va >> shift) & 0x1FF);

    private ulong Table(ulong table, int index, bool user)
    {
        ulong at = table + (ulong)index * 8;
        ulong entry = Get64(at);
        if ((entry & Present) != 0)
        {
            if (user && (entry & User) == 0)
            {
                Put64(at, entry | User);
            }
            return entry & AddressMask;
        }
        ulong fresh = AllocTable();
        Put64(at, fresh | Present | Write | Accessed | Dirty | (user ? User : 0));
        return fresh;
    }

    /// <summary>Maps one 4 KiB page in the address space whose PML4 is <paramref name="pml4"/>.</summary>
    public void Map4K(ulong pml4, ulong va, ulong pa, bool user = false, bool writable = true, bool executable = false)
    {
        ulong pt = Table(Table(Table(pml4, Index(va, 39), user), Index(va, 30), user), Index(va, 21), user);
        Put64(pt + (ulong)Index(va, 12) * 8, pa | Present | Accessed | Dirty
            | (writable ? Write : 0) | (user ? User : 0) | (executable ? 0 : NoExecute));
    }

    /// <summary>Maps one 2 MiB page (kernel, executable).</summary>
    public void Map2M(ulong pml4, ulong va, ulong pa)
    {
        ulong pd = Table(Table(pml4, Index(va, 39), false), Index(va, 30), false);
        Put64(pd + (ulong)Index(va, 21) * 8, pa | Present | Write | Accessed | Dirty | LargePage);
    }

    /// <summary>Maps [va, va+size) with fresh scattered pages; returns nothing (read back through <see cref="Translate"/>).</summary>
    public void MapFresh(ulong pml4, ulong va, ulong size, bool user, bool writable = true, bool executable = false)
    {
        for (ulong o = 0; o < size; o += Page)
        {
            if (TryTranslate(pml4, va + o, out _))
            {
                continue;
            }
            Map4K(pml4, va + o, AllocData(), user, writable, executable);
        }
    }

    /// <summary>Physical address of a mapped virtual address.</summary>
    public bool TryTranslate(ulong pml4, ulong va, out ulong pa)
    {
        pa = 0;
        ulong entry = Get64(pml4 + (ulong)Index(va, 39) * 8);
        if ((entry & Present) == 0)
        {
            return false;
        }
        entry = Get64((entry & AddressMask) + (ulong)Index(va, 30) * 8);
        if ((entry & Present) == 0)
        {
            return false;
        }
        entry = Get64((entry & AddressMask) + (ulong)Index(va, 21) * 8);
        if ((entry & Present) == 0)
        {
            return false;
        }
        if ((entry & LargePage) != 0)
        {
            pa = (entry & 0x000FFFFFFFE00000) + (va & (TwoMiB - 1));
            return true;
        }
        entry = Get64((entry & AddressMask) + (ulong)Index(va, 12) * 8);
        if ((entry & Present) == 0)
        {
            return false;
        }
        pa = (entry & AddressMask) + (va & (Page - 1));
        return true;
    }

    /// <summary>
    /// Pages a mapped 4 KiB page out, as the memory manager does: its frame is zeroed and its PTE becomes a software
    /// (pagefile) PTE: not valid, protection read-write (4) in bits 5-9, the pagefile offset in bits 32-63.
    /// </summary>
    public void PageOut(ulong pml4, ulong va, uint pagefileOffset)
    {
        ulong pa = Translate(pml4, va) & ~(ulong)(Page - 1);
        ulong pdpt = Get64(pml4 + (ulong)Index(va, 39) * 8) & AddressMask;
        ulong pd = Get64(pdpt + (ulong)Index(va, 30) * 8) & AddressMask;
        ulong pdEntry = Get64(pd + (ulong)Index(va, 21) * 8);
        if ((pdEntry & LargePage) != 0)
        {
            throw new InvalidOperationException($"0x{va:X} is in a large page (cannot be paged out)");
        }
        ulong pte = (pdEntry & AddressMask) + (ulong)Index(va, 12) * 8;
        Bytes.AsSpan(checked((int)pa), Page).Clear();
        Put64(pte, ((ulong)pagefileOffset << 32) | (4UL << 5));
    }

    public ulong Translate(ulong pml4, ulong va)
        => TryTranslate(pml4, va, out ulong pa) ? pa : throw new InvalidOperationException($"0x{va:X} is not mapped in PML4 0x{pml4:X}");

    /// <summary>Writes bytes at a virtual address (page by page).</summary>
    public void WriteVa(ulong pml4, ulong va, ReadOnlySpan<byte> bytes)
    {
        int done = 0;
        while (done < bytes.Length)
        {
            ulong at = va + (ulong)done;
            int chunk = (int)Math.Min((ulong)(bytes.Length - done), Page - (at & (Page - 1)));
            bytes.Slice(done, chunk).CopyTo(Bytes.AsSpan(checked((int)Translate(pml4, at))));
            done += chunk;
        }
    }

    public void ReadVa(ulong pml4, ulong va, Span<byte> into)
    {
        int done = 0;
        while (done < into.Length)
        {
            ulong at = va + (ulong)done;
            int chunk = (int)Math.Min((ulong)(into.Length - done), Page - (at & (Page - 1)));
            Bytes.AsSpan(checked((int)Translate(pml4, at)), chunk).CopyTo(into.Slice(done, chunk));
            done += chunk;
        }
    }

    public void Write64(ulong pml4, ulong va, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        WriteVa(pml4, va, b);
    }

    public void Write32(ulong pml4, ulong va, uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        WriteVa(pml4, va, b);
    }

    public void Write16(ulong pml4, ulong va, ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        WriteVa(pml4, va, b);
    }

    public ulong Read64(ulong pml4, ulong va)
    {
        Span<byte> b = stackalloc byte[8];
        ReadVa(pml4, va, b);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    /// <summary>UTF-16LE bytes of a string with a terminating NUL.</summary>
    public static byte[] Utf16z(string text) => Encoding.Unicode.GetBytes(text + "\0");
}
