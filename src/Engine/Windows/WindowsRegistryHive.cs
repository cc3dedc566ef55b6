using System.Buffers.Binary;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>
/// Offsets of the configuration manager's hive structures, resolved once per kernel from its ISF: _CMHIVE (HiveList,
/// FileFullPath, FileUserName, HiveRootPath), _HHIVE (Signature, BaseBlock, Storage), _DUAL (Length, Map), the map
/// directory and tables and _HMAP_ENTRY, which differs by build: Windows 7 keeps the block's address in BlockAddress,
/// Windows 8+ keeps the bin's address in PermanentBinAddress (flag bits in the low 4 bits) and the block's offset in its
/// bin in BlockOffset. The layout is chosen by the presence of those fields, never by version.
/// </summary>
internal sealed record HiveLayout(
    int HiveList, int FileFullPath, int FileUserName, int? HiveRootPath, int Signature, int BaseBlock,
    int Storage, int DualSize, int DualLength, int DualMap, int TableSize, int EntrySize,
    int? BlockAddress, int? BlockOffset, int? PermanentBinAddress, int RootCell)
{
    public static HiveLayout From(TypeModel t)
    {
        int Off(string s, string f) => t.RequiredOffset(s, f);
        int Size(string s) => t.RequiredSize(s);
        int? Opt(string s, string f) => t.TryGetOffset(s, f, out int o) ? o : null;
        int? blockAddress = Opt("_HMAP_ENTRY", "BlockAddress");
        int? blockOffset = Opt("_HMAP_ENTRY", "BlockOffset");
        int? binAddress = Opt("_HMAP_ENTRY", "PermanentBinAddress");
        if (blockAddress is null && (blockOffset is null || binAddress is null))
        {
            throw new KernelNotFoundException($"{t.Source}: _HMAP_ENTRY has neither BlockAddress nor BlockOffset+PermanentBinAddress");
        }
        return new HiveLayout(
            Off("_CMHIVE", "HiveList"), Off("_CMHIVE", "FileFullPath"), Off("_CMHIVE", "FileUserName"), Opt("_CMHIVE", "HiveRootPath"),
            Off("_CMHIVE", "Hive.Signature"), Off("_CMHIVE", "Hive.BaseBlock"), Off("_CMHIVE", "Hive.Storage"),
            Size("_DUAL"), Off("_DUAL", "Length"), Off("_DUAL", "Map"), Size("_HMAP_TABLE"), Size("_HMAP_ENTRY"),
            blockAddress, blockOffset, binAddress, Off("_HBASE_BLOCK", "RootCell"));
    }
}

/// <summary>Why a cell could not be read, with the hive offset (cell index) and, when known, the virtual address.</summary>
/// <param name="Index">The cell index (bit 31: volatile storage).</param>
/// <param name="Address">Virtual address where the read stopped (null when the map did not give one).</param>
/// <param name="Reason">One line.</param>
public sealed record CellFault(uint Index, ulong? Address, string Reason)
{
    /// <inheritdoc />
    public override string ToString() => Address is { } a ? $"cell 0x{Index:X} at 0x{a:X}: {Reason}" : $"cell 0x{Index:X}: {Reason}";
}

/// <summary>
/// One registry hive as the kernel holds it: a _CMHIVE on CmpHiveListHead whose cells are reached through the hive's
/// storage maps (stable and volatile) exactly as the kernel's HvpGetCellMapped does: cell index -> directory (bits
/// 30-21) -> table (20-12) -> _HMAP_ENTRY -> block address + offset (11-0). Pages that are not in memory are reported
/// as <see cref="CellFault"/>s, never guessed.
/// </summary>
/// <remarks>Immutable; reads never throw for what they read.</remarks>
public sealed class RegistryHive
{
    /// <summary>_HHIVE.Signature of a live hive.</summary>
    public const uint HiveSignature = 0xBEE0BEE0;

    /// <summary>Largest cell read (bigger ones are refused as garbage).</summary>
    public const int MaxCellBytes = 1 << 20;

    private readonly HiveLayout _layout;

    internal RegistryHive(IVirtualMemory memory, HiveLayout layout, ulong address, string? fileFullPath, string? fileUserName,
        string? rootPath, uint stableLength, uint volatileLength, ulong baseBlock)
    {
        Memory = memory;
        _layout = layout;
        Address = address;
        FileFullPath = fileFullPath;
        FileUserName = fileUserName;
        HiveRootPath = rootPath;
        StableLength = stableLength;
        VolatileLength = volatileLength;
        BaseBlock = baseBlock;
    }

    /// <summary>The kernel address space.</summary>
    public IVirtualMemory Memory { get; }

    /// <summary>Address of the _CMHIVE.</summary>
    public ulong Address { get; }

    /// <summary>_CMHIVE.FileFullPath (null: unreadable).</summary>
    public string? FileFullPath { get; }

    /// <summary>_CMHIVE.FileUserName (null: unreadable).</summary>
    public string? FileUserName { get; }

    /// <summary>_CMHIVE.HiveRootPath (null: unreadable or absent in this build).</summary>
    public string? HiveRootPath { get; }

    /// <summary>Storage[Stable].Length: bytes of stable cells.</summary>
    public uint StableLength { get; }

    /// <summary>Storage[Volatile].Length.</summary>
    public uint VolatileLength { get; }

    /// <summary>_HHIVE.BaseBlock (the in-memory copy of the regf header).</summary>
    public ulong BaseBlock { get; }

    /// <summary>The first non-empty of FileFullPath, FileUserName, HiveRootPath (as Volatility names a hive).</summary>
    public string? Name => new[] { FileFullPath, FileUserName, HiveRootPath }.FirstOrDefault(n => !string.IsNullOrEmpty(n));

    /// <summary>The root key's cell index from the base block (null with a fault when it does not read).</summary>
    public uint? RootCell(out CellFault? fault)
    {
        fault = null;
        if (Memory.TryReadUInt32(BaseBlock + (ulong)_layout.RootCell, out uint root))
        {
            return root;
        }
        Memory.TryTranslate(BaseBlock, out _, out TranslationFault why);
        fault = new CellFault(0, BaseBlock, $"base block does not read ({why})");
        return null;
    }

    /// <summary>The virtual address of the cell <paramref name="index"/> (its size field), through the storage map.</summary>
    public bool TryCellAddress(uint index, out ulong address, out CellFault? fault)
    {
        address = 0;
        fault = null;
        int storage = (int)(index >> 31);
        uint offset = index & 0x7FFFFFFF;
        uint length = storage == 0 ? StableLength : VolatileLength;
        if (offset >= length)
        {
            fault = new CellFault(index, null, $"beyond the {(storage == 0 ? "stable" : "volatile")} storage (length 0x{length:X})");
            return false;
        }
        ulong dual = Address + (ulong)_layout.Storage + (ulong)(storage * _layout.DualSize);
        uint dir = (index >> 21) & 0x3FF, table = (index >> 12) & 0x1FF, within = index & 0xFFF;
        if (!Read64(dual + (ulong)_layout.DualMap, index, "storage map pointer", out ulong map, out fault)
            || !Read64(map + dir * 8UL, index, $"map directory entry {dir}", out ulong tableVa, out fault))
        {
            return false;
        }
        if (tableVa == 0)
        {
            fault = new CellFault(index, null, $"map directory entry {dir} is empty");
            return false;
        }
        ulong entry = tableVa + table * (ulong)_layout.EntrySize;
        ulong block;
        if (_layout.BlockAddress is { } blockAddress)
        {
            if (!Read64(entry + (ulong)blockAddress, index, $"map entry {dir}/{table}", out block, out fault))
            {
                return false;
            }
        }
        else
        {
            if (!Read64(entry + (ulong)_layout.PermanentBinAddress!.Value, index, $"map entry {dir}/{table}", out ulong bin, out fault)
                || !Read64(entry + (ulong)_layout.BlockOffset!.Value, index, $"map entry {dir}/{table}", out ulong blockOffset, out fault))
            {
                return false;
            }
            block = (bin & ~0xFUL) == 0 ? 0 : (bin & ~0xFUL) + blockOffset;
        }
        if (block == 0 || !WindowsObjectManager.IsKernelPointer(block))
        {
            fault = new CellFault(index, null, $"map entry {dir}/{table} gives no block (0x{block:X})");
            return false;
        }
        address = block + within;
        return true;
    }

    /// <summary>
    /// The data of an allocated cell (after its 4-byte size), or null with the fault: the map does not give the block,
    /// a page of it is not in memory, or the size field is not that of an allocated cell.
    /// </summary>
    public byte[]? ReadCell(uint index, out CellFault? fault)
    {
        if (!TryCellAddress(index, out ulong address, out fault))
        {
            return null;
        }
        if (!Memory.TryReadUInt32(address, out uint raw))
        {
            fault = Unreadable(index, address);
            return null;
        }
        int size = -(int)raw;
        if (size < 4 || size > MaxCellBytes)
        {
            fault = new CellFault(index, address, (int)raw > 0 ? "cell is free (positive size)" : $"implausible cell size {(int)raw}");
            return null;
        }
        byte[] data = new byte[size - 4];
        int got = Memory.Read(address + 4, data);
        if (got != data.Length)
        {
            fault = Unreadable(index, address + 4 + (ulong)got);
            return null;
        }
        return data;
    }

    private CellFault Unreadable(uint index, ulong at)
    {
        Memory.TryTranslate(at, out _, out TranslationFault why);
        return new CellFault(index, at, why == TranslationFault.None ? "not in the capture" : $"page not in memory ({why})");
    }

    private bool Read64(ulong va, uint index, string what, out ulong value, out CellFault? fault)
    {
        fault = null;
        if (Memory.TryReadUInt64(va, out value))
        {
            return true;
        }
        Memory.TryTranslate(va, out _, out TranslationFault why);
        fault = new CellFault(index, va, $"{what} does not read ({why})");
        return false;
    }

    /// <summary>
    /// The hives on CmpHiveListHead (_CMHIVE.HiveList), each checked for the _HHIVE signature; a bad pointer, cycle or
    /// limit ends the walk with a note.
    /// </summary>
    public static (List<RegistryHive> Hives, List<string> Notes) List(WindowsKernel kernel, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        HiveLayout layout = HiveLayout.From(kernel.Types);
        if (!kernel.TryGetSymbol("CmpHiveListHead", out ulong head))
        {
            throw new KernelNotFoundException($"{kernel.Types.Source} has no CmpHiveListHead symbol");
        }
        IVirtualMemory space = kernel.Kernel;
        UnicodeStringLayout text = UnicodeStringLayout.Of(kernel.Types);
        ListWalk walk = KernelLists.Circular(space, head, "hives", AnalysisLimits.Default.MaxHives,
            WindowsObjectManager.IsKernelPointer, cancellationToken: ct);
        var notes = new List<string>();
        if (walk.Note is not null)
        {
            notes.Add(walk.Note);
        }
        var hives = new List<RegistryHive>();
        Span<byte> dual = stackalloc byte[4];
        foreach (ulong link in walk.Entries)
        {
            ulong cmhive = link - (ulong)layout.HiveList;
            if (!space.TryReadUInt32(cmhive + (ulong)layout.Signature, out uint signature) || signature != HiveSignature)
            {
                notes.Add($"_CMHIVE at 0x{cmhive:X}: no hive signature (0x{signature:X}); skipped");
                continue;
            }
            ulong storage = cmhive + (ulong)layout.Storage;
            space.TryReadUInt32(storage + (ulong)layout.DualLength, out uint stable);
            space.TryReadUInt32(storage + (ulong)layout.DualSize + (ulong)layout.DualLength, out uint @volatile);
            space.TryReadUInt64(cmhive + (ulong)layout.BaseBlock, out ulong baseBlock);
            hives.Add(new RegistryHive(space, layout, cmhive,
                WindowsMemoryReader.UnicodeString(space, cmhive + (ulong)layout.FileFullPath, text),
                WindowsMemoryReader.UnicodeString(space, cmhive + (ulong)layout.FileUserName, text),
                layout.HiveRootPath is { } root ? WindowsMemoryReader.UnicodeString(space, cmhive + (ulong)root, text) : null,
                stable, @volatile, baseBlock));
        }
        return (hives, notes);
    }

    /// <summary>Reads a little-endian u32 of a cell's data (0 past its end).</summary>
    internal static uint U32(ReadOnlySpan<byte> data, int at) => at + 4 <= data.Length ? BinaryPrimitives.ReadUInt32LittleEndian(data[at..]) : 0;

    /// <summary>Reads a little-endian u16 of a cell's data (0 past its end).</summary>
    internal static ushort U16(ReadOnlySpan<byte> data, int at) => at + 2 <= data.Length ? BinaryPrimitives.ReadUInt16LittleEndian(data[at..]) : (ushort)0;
}
