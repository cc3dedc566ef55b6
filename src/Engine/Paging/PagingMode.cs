namespace CloudMem.Engine.Paging;

/// <summary>One level of a page-table walk.</summary>
/// <param name="Name">Intel's name for the table (PML5, PML4, PDPT, PD, PT).</param>
/// <param name="Shift">Lowest virtual-address bit this level indexes.</param>
/// <param name="IndexBits">How many virtual-address bits index the table.</param>
/// <param name="LargePageAllowed">Whether an entry here may map a page directly (PS bit): 1 GiB at PDPT, 2 MiB at PD.</param>
public sealed record PagingLevel(string Name, int Shift, int IndexBits, bool LargePageAllowed);

/// <summary>
/// A paging mode described as data (style C10): the levels, the entry size and which bits hold the next address.
/// One walker (<see cref="AddressSpace"/>) serves every mode.
/// </summary>
public sealed class PagingMode
{
    private PagingMode(string name, int virtualBits, int entrySize, ulong addressMask, PagingLevel[] levels)
    {
        Name = name;
        VirtualBits = virtualBits;
        EntrySize = entrySize;
        AddressMask = addressMask;
        Levels = levels;
    }

    /// <summary>Name, e.g. "x86-64 4-level".</summary>
    public string Name { get; }

    /// <summary>Implemented virtual-address bits (48 or 57); higher bits must copy the top one (canonical form).</summary>
    public int VirtualBits { get; }

    /// <summary>Bytes per table entry.</summary>
    public int EntrySize { get; }

    /// <summary>Bits of an entry that hold a physical address (MAXPHYADDR 52 on x86-64).</summary>
    public ulong AddressMask { get; }

    /// <summary>Levels from the root table down.</summary>
    public IReadOnlyList<PagingLevel> Levels { get; }

    /// <summary>x86-64 with 4-level paging (48-bit virtual addresses).</summary>
    public static PagingMode X64Level4 { get; } = new("x86-64 4-level", 48, 8, 0x000F_FFFF_FFFF_F000,
    [
        new("PML4", 39, 9, false),
        new("PDPT", 30, 9, true),
        new("PD", 21, 9, true),
        new("PT", 12, 9, false),
    ]);

    /// <summary>x86-64 with 5-level paging (57-bit virtual addresses).</summary>
    public static PagingMode X64Level5 { get; } = new("x86-64 5-level", 57, 8, 0x000F_FFFF_FFFF_F000,
    [
        new("PML5", 48, 9, false),
        new("PML4", 39, 9, false),
        new("PDPT", 30, 9, true),
        new("PD", 21, 9, true),
        new("PT", 12, 9, false),
    ]);

    /// <summary>True when <paramref name="va"/> is canonical for this mode.</summary>
    public bool IsCanonical(ulong va)
    {
        ulong top = va >> (VirtualBits - 1);
        return top == 0 || top == (ulong.MaxValue >> (VirtualBits - 1));
    }
}
