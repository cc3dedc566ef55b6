using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Core;

namespace CloudMem.Engine.Windows;

/// <summary>Registry value types (winnt.h REG_*).</summary>
public enum RegistryValueType : uint
{
    /// <summary>No type.</summary>
    REG_NONE = 0,
    /// <summary>A UTF-16 string.</summary>
    REG_SZ = 1,
    /// <summary>A UTF-16 string with %VARIABLE% references.</summary>
    REG_EXPAND_SZ = 2,
    /// <summary>Bytes.</summary>
    REG_BINARY = 3,
    /// <summary>A 32-bit little-endian number.</summary>
    REG_DWORD = 4,
    /// <summary>A 32-bit big-endian number.</summary>
    REG_DWORD_BIG_ENDIAN = 5,
    /// <summary>A symbolic link (UTF-16 key path).</summary>
    REG_LINK = 6,
    /// <summary>A list of UTF-16 strings, each NUL-terminated, ending with an empty one.</summary>
    REG_MULTI_SZ = 7,
    /// <summary>A device driver resource list.</summary>
    REG_RESOURCE_LIST = 8,
    /// <summary>A hardware resource descriptor.</summary>
    REG_FULL_RESOURCE_DESCRIPTOR = 9,
    /// <summary>A hardware resource requirements list.</summary>
    REG_RESOURCE_REQUIREMENTS_LIST = 10,
    /// <summary>A 64-bit little-endian number.</summary>
    REG_QWORD = 11,
}

/// <summary>A key node (nk cell): name, flags, last write, its subkey lists (stable and volatile), values, class.</summary>
public sealed record RegistryKey(uint Cell, string Name, ushort Flags, DateTimeOffset? LastWrite,
    uint StableSubkeys, uint StableList, uint VolatileSubkeys, uint VolatileList, uint ValueCount, uint ValueList,
    uint ClassCell, ushort ClassLength)
{
    /// <summary>KEY_IS_VOLATILE.</summary>
    public bool IsVolatile => (Flags & 0x1) != 0 || (Cell & 0x80000000) != 0;
}

/// <summary>A value (vk cell) with its data read (null with <see cref="Fault"/> when the data cells do not read).</summary>
public sealed record RegistryValue(uint Cell, string Name, uint RawType, byte[]? Data, CellFault? Fault)
{
    /// <summary>The type as an enum (unknown types keep their number).</summary>
    public RegistryValueType Type => (RegistryValueType)RawType;
}

/// <summary>
/// The regf cell formats (as Windows writes them in hive files and keeps them in memory): key nodes "nk", values "vk",
/// subkey indexes "lf"/"lh" (offset + hash), "li" (offsets) and "ri" (index of indexes), value lists, big data "db"
/// (segments of at most 16344 bytes) and data stored in the vk's offset field (4 bytes or fewer). Every count is bounded
/// by <see cref="AnalysisLimits"/>; a cell that does not read is a <see cref="CellFault"/>.
/// </summary>
public static class RegistryKeys
{
    private const int NkFlags = 0x02, NkLastWrite = 0x04, NkStableCount = 0x14, NkVolatileCount = 0x18, NkStableList = 0x1C,
        NkVolatileList = 0x20, NkValueCount = 0x24, NkValueList = 0x28, NkClass = 0x30, NkNameLength = 0x48, NkClassLength = 0x4A, NkName = 0x4C;
    private const int VkNameLength = 0x02, VkDataSize = 0x04, VkData = 0x08, VkType = 0x0C, VkFlags = 0x10, VkName = 0x14;
    private const ushort CompressedName = 0x20;
    private const uint ResidentData = 0x80000000;
    private const int BigDataSegment = 16344;
    private const uint NoCell = 0xFFFFFFFF;

    /// <summary>Parses the nk cell <paramref name="cell"/>.</summary>
    public static RegistryKey? Key(RegistryHive hive, uint cell, out CellFault? fault)
    {
        ArgumentNullException.ThrowIfNull(hive);
        byte[]? d = hive.ReadCell(cell, out fault);
        if (d is null)
        {
            return null;
        }
        if (d.Length < NkName || d[0] != 'n' || d[1] != 'k')
        {
            fault = new CellFault(cell, null, "not a key node (no 'nk' signature)");
            return null;
        }
        ushort flags = RegistryHive.U16(d, NkFlags);
        int nameLength = Math.Min(RegistryHive.U16(d, NkNameLength), d.Length - NkName);
        string name = (flags & CompressedName) != 0
            ? Encoding.Latin1.GetString(d, NkName, nameLength)
            : Encoding.Unicode.GetString(d, NkName, nameLength & ~1);
        long time = BinaryPrimitives.ReadInt64LittleEndian(d.AsSpan(NkLastWrite));
        return new RegistryKey(cell, name, flags, FileTime(time),
            RegistryHive.U32(d, NkStableCount), RegistryHive.U32(d, NkStableList),
            RegistryHive.U32(d, NkVolatileCount), RegistryHive.U32(d, NkVolatileList),
            RegistryHive.U32(d, NkValueCount), RegistryHive.U32(d, NkValueList),
            RegistryHive.U32(d, NkClass), RegistryHive.U16(d, NkClassLength));
    }

    /// <summary>A FILETIME as UTC (null for 0 or out of range).</summary>
    public static DateTimeOffset? FileTime(long value)
        => value <= 0 || value > DateTime.MaxValue.ToFileTimeUtc() ? null : new DateTimeOffset(DateTime.FromFileTimeUtc(value));

    /// <summary>The key's class name (null with a fault when it does not read; "" when it has none).</summary>
    public static string? ClassName(RegistryHive hive, RegistryKey key, out CellFault? fault)
    {
        ArgumentNullException.ThrowIfNull(key);
        fault = null;
        if (key.ClassCell == NoCell || key.ClassLength == 0)
        {
            return "";
        }
        byte[]? d = hive.ReadCell(key.ClassCell, out fault);
        return d is null ? null : Encoding.Unicode.GetString(d, 0, Math.Min(key.ClassLength, d.Length) & ~1);
    }

    /// <summary>
    /// The subkeys of <paramref name="key"/>, stable then volatile. Each index or key cell that does not read adds a
    /// fault (the rest are still listed).
    /// </summary>
    public static List<RegistryKey> Subkeys(RegistryHive hive, RegistryKey key, List<CellFault> faults)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(faults);
        var cells = new List<uint>();
        if (key.StableSubkeys > 0 && key.StableList != NoCell)
        {
            IndexCells(hive, key.StableList, cells, faults, 0);
        }
        if (key.VolatileSubkeys > 0 && key.VolatileList != NoCell)
        {
            IndexCells(hive, key.VolatileList, cells, faults, 0);
        }
        var keys = new List<RegistryKey>(cells.Count);
        foreach (uint cell in cells)
        {
            if (Key(hive, cell, out CellFault? fault) is { } sub)
            {
                keys.Add(sub);
            }
            else
            {
                faults.Add(fault!);
            }
        }
        return keys;
    }

    private static void IndexCells(RegistryHive hive, uint list, List<uint> cells, List<CellFault> faults, int depth)
    {
        byte[]? d = hive.ReadCell(list, out CellFault? fault);
        if (d is null)
        {
            faults.Add(fault!);
            return;
        }
        if (d.Length < 4)
        {
            faults.Add(new CellFault(list, null, "subkey index shorter than its header"));
            return;
        }
        string signature = Encoding.ASCII.GetString(d, 0, 2);
        int count = RegistryHive.U16(d, 2);
        int stride = signature is "lf" or "lh" ? 8 : signature is "li" or "ri" ? 4 : 0;
        if (stride == 0)
        {
            faults.Add(new CellFault(list, null, $"unknown subkey index signature '{signature}'"));
            return;
        }
        if (4 + count * stride > d.Length || count > AnalysisLimits.Default.MaxKeyEntries || depth > 8)
        {
            faults.Add(new CellFault(list, null, $"subkey index of {count} entries does not fit its cell of {d.Length} bytes"));
            count = Math.Min(count, (d.Length - 4) / stride);
        }
        for (int i = 0; i < count; i++)
        {
            uint cell = RegistryHive.U32(d, 4 + i * stride);
            if (signature == "ri")
            {
                IndexCells(hive, cell, cells, faults, depth + 1);
            }
            else if (cells.Count < AnalysisLimits.Default.MaxKeyEntries)
            {
                cells.Add(cell);
            }
        }
    }

    /// <summary>The values of <paramref name="key"/> (unreadable vk cells add faults; unreadable data is kept as a value with a fault).</summary>
    public static List<RegistryValue> Values(RegistryHive hive, RegistryKey key, List<CellFault> faults)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(faults);
        var values = new List<RegistryValue>();
        if (key.ValueCount == 0 || key.ValueList == NoCell)
        {
            return values;
        }
        byte[]? list = hive.ReadCell(key.ValueList, out CellFault? fault);
        if (list is null)
        {
            faults.Add(fault!);
            return values;
        }
        int count = (int)Math.Min(Math.Min(key.ValueCount, (uint)AnalysisLimits.Default.MaxKeyEntries), (uint)(list.Length / 4));
        for (int i = 0; i < count; i++)
        {
            uint cell = RegistryHive.U32(list, i * 4);
            if (Value(hive, cell, out fault) is { } value)
            {
                values.Add(value);
            }
            else
            {
                faults.Add(fault!);
            }
        }
        return values;
    }

    /// <summary>Parses the vk cell <paramref name="cell"/> and reads its data (resident, one cell, or big data segments).</summary>
    public static RegistryValue? Value(RegistryHive hive, uint cell, out CellFault? fault)
    {
        ArgumentNullException.ThrowIfNull(hive);
        byte[]? d = hive.ReadCell(cell, out fault);
        if (d is null)
        {
            return null;
        }
        if (d.Length < VkName || d[0] != 'v' || d[1] != 'k')
        {
            fault = new CellFault(cell, null, "not a value (no 'vk' signature)");
            return null;
        }
        int nameLength = Math.Min(RegistryHive.U16(d, VkNameLength), d.Length - VkName);
        string name = (RegistryHive.U16(d, VkFlags) & 1) != 0
            ? Encoding.Latin1.GetString(d, VkName, nameLength)
            : Encoding.Unicode.GetString(d, VkName, nameLength & ~1);
        uint size = RegistryHive.U32(d, VkDataSize);
        uint dataCell = RegistryHive.U32(d, VkData);
        uint type = RegistryHive.U32(d, VkType);
        byte[]? data = ValueData(hive, size, dataCell, out CellFault? dataFault);
        return new RegistryValue(cell, name, type, data, dataFault);
    }

    private static byte[]? ValueData(RegistryHive hive, uint size, uint dataCell, out CellFault? fault)
    {
        fault = null;
        if ((size & ResidentData) != 0)
        {
            int length = (int)Math.Min(size & ~ResidentData, 4);
            byte[] inline = new byte[length];
            for (int i = 0; i < length; i++)
            {
                inline[i] = (byte)(dataCell >> (8 * i));
            }
            return inline;
        }
        if (size == 0)
        {
            return [];
        }
        if (size > RegistryHive.MaxCellBytes * 16)
        {
            fault = new CellFault(dataCell, null, $"value data size {size} is implausible");
            return null;
        }
        byte[]? d = hive.ReadCell(dataCell, out fault);
        if (d is null)
        {
            return null;
        }
        if (size > BigDataSegment && d.Length >= 8 && d[0] == 'd' && d[1] == 'b')
        {
            return BigData(hive, d, dataCell, (int)size, out fault);
        }
        if (d.Length < size)
        {
            fault = new CellFault(dataCell, null, $"data cell of {d.Length} bytes is shorter than the value's {size}");
            return null;
        }
        return d.AsSpan(0, (int)size).ToArray();
    }

    private static byte[]? BigData(RegistryHive hive, byte[] db, uint dbCell, int size, out CellFault? fault)
    {
        int segments = RegistryHive.U16(db, 2);
        byte[]? list = hive.ReadCell(RegistryHive.U32(db, 4), out fault);
        if (list is null)
        {
            return null;
        }
        if (segments * 4 > list.Length)
        {
            fault = new CellFault(dbCell, null, $"big data of {segments} segments has a list of {list.Length} bytes");
            return null;
        }
        byte[] data = new byte[size];
        int done = 0;
        for (int i = 0; i < segments && done < size; i++)
        {
            byte[]? segment = hive.ReadCell(RegistryHive.U32(list, i * 4), out fault);
            if (segment is null)
            {
                return null;
            }
            int take = Math.Min(Math.Min(BigDataSegment, segment.Length), size - done);
            segment.AsSpan(0, take).CopyTo(data.AsSpan(done));
            done += take;
        }
        if (done < size)
        {
            fault = new CellFault(dbCell, null, $"big data segments hold {done} of {size} bytes");
            return null;
        }
        return data;
    }

    /// <summary>
    /// The key at <paramref name="path"/> (components separated by '\', case-insensitive, relative to the hive's root;
    /// empty for the root). Null with the fault or the missing component's name in <paramref name="problem"/>.
    /// </summary>
    public static RegistryKey? Open(RegistryHive hive, string path, out string? problem, List<CellFault> faults)
    {
        ArgumentNullException.ThrowIfNull(hive);
        ArgumentNullException.ThrowIfNull(path);
        problem = null;
        uint? root = hive.RootCell(out CellFault? fault);
        RegistryKey? key = root is { } r ? Key(hive, r, out fault) : null;
        if (key is null)
        {
            faults.Add(fault!);
            problem = $"root key: {fault}";
            return null;
        }
        string[] parts = path.Split('\\', StringSplitOptions.RemoveEmptyEntries);
        foreach (string part in parts.Take(AnalysisLimits.Default.MaxKeyDepth))
        {
            RegistryKey? next = Subkeys(hive, key, faults).FirstOrDefault(k => string.Equals(k.Name, part, StringComparison.OrdinalIgnoreCase));
            if (next is null)
            {
                problem = $"no subkey '{part}' under '{key.Name}'";
                return null;
            }
            key = next;
        }
        return key;
    }

    /// <summary>Value data as text, as regedit shows it: strings, numbers, multi-strings, links; binary as hex bytes.</summary>
    public static string Render(RegistryValueType type, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return type switch
        {
            RegistryValueType.REG_SZ or RegistryValueType.REG_EXPAND_SZ or RegistryValueType.REG_LINK => Utf16(data),
            RegistryValueType.REG_MULTI_SZ => string.Join("\n", Utf16Multi(data)),
            RegistryValueType.REG_DWORD when data.Length >= 4 => BinaryPrimitives.ReadUInt32LittleEndian(data).ToString(System.Globalization.CultureInfo.InvariantCulture),
            RegistryValueType.REG_DWORD_BIG_ENDIAN when data.Length >= 4 => BinaryPrimitives.ReadUInt32BigEndian(data).ToString(System.Globalization.CultureInfo.InvariantCulture),
            RegistryValueType.REG_QWORD when data.Length >= 8 => BinaryPrimitives.ReadUInt64LittleEndian(data).ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => System.Convert.ToHexString(data.AsSpan(0, Math.Min(data.Length, 4096))) + (data.Length > 4096 ? "..." : ""),
        };
    }

    /// <summary>A UTF-16LE string up to its first NUL.</summary>
    public static string Utf16(ReadOnlySpan<byte> data)
    {
        string text = Encoding.Unicode.GetString(data[..(data.Length & ~1)]);
        int nul = text.IndexOf('\0', StringComparison.Ordinal);
        return nul < 0 ? text : text[..nul];
    }

    private static IEnumerable<string> Utf16Multi(byte[] data)
        => Encoding.Unicode.GetString(data, 0, data.Length & ~1).Split('\0').Reverse().SkipWhile(s => s.Length == 0).Reverse();
}
