using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>A hive on CmpHiveListHead (windows.registry.hivelist).</summary>
/// <param name="Offset">Virtual address of the _CMHIVE.</param>
/// <param name="FileFullPath">_CMHIVE.FileFullPath (null: unreadable; "" for hives without a file).</param>
/// <param name="FileUserName">_CMHIVE.FileUserName.</param>
/// <param name="StableLength">Bytes of stable storage (Storage[0].Length).</param>
/// <param name="VolatileLength">Bytes of volatile storage (Storage[1].Length).</param>
public sealed record HiveRow([property: Hex] ulong Offset, string? FileFullPath, string? FileUserName,
    [property: Hex] ulong StableLength, [property: Hex] ulong VolatileLength);

/// <summary>A subkey or value of a key (windows.registry.printkey), in Volatility's columns.</summary>
/// <param name="LastWriteTime">The subkey's last write (for a value: its key's).</param>
/// <param name="HiveOffset">The _CMHIVE.</param>
/// <param name="Type">"Key" for a subkey, else the value type (REG_SZ, ...; unknown types by number).</param>
/// <param name="Key">Hive name and key path.</param>
/// <param name="Name">Subkey or value name (null: the cell did not read).</param>
/// <param name="Data">Value data as text (null for keys, and when the data did not read).</param>
/// <param name="Volatile">The subkey is in volatile storage.</param>
/// <param name="Doubt">Why something is missing: the cell index, its address and the fault.</param>
public sealed record PrintKeyRow(DateTimeOffset? LastWriteTime, [property: Hex] ulong HiveOffset, string Type, string Key,
    string? Name, string? Data, bool Volatile, string? Doubt);

/// <summary>A UserAssist entry (windows.registry.userassist): a program the user ran from the shell.</summary>
/// <param name="HiveOffset">The NTUSER.DAT hive.</param>
/// <param name="HiveName">Its name.</param>
/// <param name="Path">The Count key's path.</param>
/// <param name="LastWriteTime">The Count key's last write.</param>
/// <param name="Name">The value name ROT13-decoded (a path or a known-folder GUID path).</param>
/// <param name="Count">Run count.</param>
/// <param name="FocusCount">Times focused (Windows 7+).</param>
/// <param name="TimeFocused">Focus time (Windows 7+).</param>
/// <param name="LastUpdated">Last run.</param>
/// <param name="Doubt">Why fields are missing.</param>
public sealed record UserAssistRow([property: Hex] ulong HiveOffset, string? HiveName, string Path, DateTimeOffset? LastWriteTime,
    string Name, uint? Count, uint? FocusCount, TimeSpan? TimeFocused, DateTimeOffset? LastUpdated, string? Doubt);

/// <summary>windows.registry.hivelist, windows.registry.printkey and windows.registry.userassist.</summary>
public static class WindowsRegistry
{
    private const string UserAssistKey = @"Software\Microsoft\Windows\CurrentVersion\Explorer\UserAssist";

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register(new PluginInfo("windows.registry.hivelist",
            "Registry hives on the configuration manager's list (CmpHiveListHead) with their file paths", TargetOs.Windows),
            (c, a, ct) => HiveList(c.Windows(ct), ct));
        PluginRegistry.Register(new PluginInfo("windows.registry.printkey",
            "A registry key's subkeys and values with last-write times, read through each hive's cell map (--key PATH; --base HIVE)",
            TargetOs.Windows, PluginInputs.KeyPath | PluginInputs.BaseAddress),
            (c, a, ct) => PrintKey(c.Windows(ct), a.KeyPath ?? "", a.BaseAddress, ct));
        PluginRegistry.Register(new PluginInfo("windows.registry.userassist",
            "Programs run from the shell per user (NTUSER.DAT UserAssist Count values, ROT13 names, run counts, last run)",
            TargetOs.Windows, PluginInputs.BaseAddress),
            (c, a, ct) => UserAssist(c.Windows(ct), a.BaseAddress, ct));
    }

    /// <summary>windows.registry.hivelist.</summary>
    public static RowsReport<HiveRow> HiveList(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<RegistryHive> hives, List<string> notes) = RegistryHive.List(kernel, ct);
        return new RowsReport<HiveRow>("windows.registry.hivelist",
            [.. hives.Select(h => new HiveRow(h.Address, h.FileFullPath, h.FileUserName, h.StableLength, h.VolatileLength))], notes);
    }

    /// <summary>
    /// windows.registry.printkey: in every hive (or the one at <paramref name="hive"/>) that has the key
    /// <paramref name="path"/>, its subkeys then its values. Cells that do not read are rows with a Doubt and notes.
    /// </summary>
    public static RowsReport<PrintKeyRow> PrintKey(WindowsKernel kernel, string path, ulong? hive = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        (List<RegistryHive> hives, List<string> notes) = RegistryHive.List(kernel, ct);
        var rows = new List<PrintKeyRow>();
        int found = 0, blocked = 0;
        foreach (RegistryHive h in Selected(hives, hive, notes))
        {
            ct.ThrowIfCancellationRequested();
            var faults = new List<CellFault>();
            RegistryKey? key = RegistryKeys.Open(h, path, out string? problem, faults);
            string hiveName = h.Name ?? $"hive 0x{h.Address:X}";
            if (key is null)
            {
                // A missing key is normal in most hives; a fault on the way is not.
                notes.AddRange(faults.Select(f => $"{hiveName}: {path}: {f}"));
                blocked += faults.Count > 0 ? 1 : 0;
                continue;
            }
            found++;
            string keyPath = path.Trim('\\').Length == 0 ? hiveName : $@"{hiveName}\{path.Trim('\\')}";
            rows.AddRange(KeyRows(h, key, keyPath, faults));
            notes.AddRange(faults.Select(f => $"{hiveName}: {f}"));
        }
        if (found == 0)
        {
            notes.Add(blocked == 0 ? $"the key '{path}' is in none of the {hives.Count} hives read"
                : $"the key '{path}' was not found; in {blocked} hive(s) a cell on the way did not read (see above)");
        }
        return new RowsReport<PrintKeyRow>("windows.registry.printkey", rows, notes);
    }

    /// <summary>The rows of one key: each subkey (an unreadable one as a row naming its cell) then each value.</summary>
    internal static IEnumerable<PrintKeyRow> KeyRows(RegistryHive hive, RegistryKey key, string keyPath, List<CellFault> faults)
    {
        int before = faults.Count;
        List<RegistryKey> subkeys = RegistryKeys.Subkeys(hive, key, faults);
        var rows = subkeys.Select(k => new PrintKeyRow(k.LastWrite, hive.Address, "Key", keyPath, k.Name, null, k.IsVolatile, null)).ToList();
        rows.AddRange(faults.Skip(before).Select(f => new PrintKeyRow(null, hive.Address, "Key", keyPath, null, null, (f.Index & 0x80000000) != 0, f.ToString())));
        before = faults.Count;
        foreach (RegistryValue v in RegistryKeys.Values(hive, key, faults))
        {
            string type = Enum.IsDefined(v.Type) ? v.Type.ToString() : $"0x{v.RawType:X}";
            rows.Add(new PrintKeyRow(key.LastWrite, hive.Address, type, keyPath, v.Name,
                v.Data is null ? null : RegistryKeys.Render(v.Type, v.Data), key.IsVolatile, v.Fault?.ToString()));
        }
        rows.AddRange(faults.Skip(before).Select(f => new PrintKeyRow(key.LastWrite, hive.Address, "value", keyPath, null, null, key.IsVolatile, f.ToString())));
        return rows;
    }

    private static IEnumerable<RegistryHive> Selected(List<RegistryHive> hives, ulong? hive, List<string> notes)
    {
        if (hive is null)
        {
            return hives;
        }
        List<RegistryHive> one = [.. hives.Where(h => h.Address == hive)];
        if (one.Count == 0)
        {
            notes.Add($"no hive at 0x{hive:X} on CmpHiveListHead");
        }
        return one;
    }

    /// <summary>windows.registry.userassist: every hive with the UserAssist key (NTUSER.DAT), every Count value.</summary>
    public static RowsReport<UserAssistRow> UserAssist(WindowsKernel kernel, ulong? hive = null, CancellationToken ct = default)
    {
        (List<RegistryHive> hives, List<string> notes) = RegistryHive.List(kernel, ct);
        var rows = new List<UserAssistRow>();
        foreach (RegistryHive h in Selected(hives, hive, notes))
        {
            var faults = new List<CellFault>();
            RegistryKey? assist = RegistryKeys.Open(h, UserAssistKey, out _, faults);
            if (assist is null)
            {
                continue;
            }
            foreach (RegistryKey guid in RegistryKeys.Subkeys(h, assist, faults))
            {
                RegistryKey? count = RegistryKeys.Subkeys(h, guid, faults).FirstOrDefault(k => k.Name.Equals("Count", StringComparison.OrdinalIgnoreCase));
                if (count is null)
                {
                    continue;
                }
                string path = $@"{UserAssistKey}\{guid.Name}\Count";
                foreach (RegistryValue v in RegistryKeys.Values(h, count, faults))
                {
                    rows.Add(Entry(h, path, count.LastWrite, v));
                }
            }
            notes.AddRange(faults.Select(f => $"{h.Name ?? $"hive 0x{h.Address:X}"}: {f}"));
        }
        return new RowsReport<UserAssistRow>("windows.registry.userassist", rows, notes);
    }

    private static UserAssistRow Entry(RegistryHive hive, string path, DateTimeOffset? written, RegistryValue v)
    {
        string name = Rot13(v.Name);
        byte[]? d = v.Data;
        if (d is { Length: 72 })
        {
            // Windows 7+: session, count, focus count, focus time (ms), ..., last run FILETIME at 0x3C.
            return new UserAssistRow(hive.Address, hive.Name, path, written, name, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4)),
                BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)), TimeSpan.FromMilliseconds(BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(12))),
                RegistryKeys.FileTime(BinaryPrimitives.ReadInt64LittleEndian(d.AsSpan(0x3C))), null);
        }
        if (d is { Length: 16 })
        {
            // Windows XP/2003: session, count (+5), last run FILETIME at 8.
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4));
            return new UserAssistRow(hive.Address, hive.Name, path, written, name, count >= 5 ? count - 5 : count, null, null,
                RegistryKeys.FileTime(BinaryPrimitives.ReadInt64LittleEndian(d.AsSpan(8))), null);
        }
        return new UserAssistRow(hive.Address, hive.Name, path, written, name, null, null, null, null,
            v.Fault?.ToString() ?? $"data of {d?.Length ?? 0} bytes is neither the 72-byte (Windows 7+) nor the 16-byte (XP) layout");
    }

    /// <summary>ROT13 of ASCII letters (UserAssist value names).</summary>
    public static string Rot13(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return string.Create(text.Length, text, (span, s) =>
        {
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                span[i] = c is >= 'a' and <= 'z' ? (char)('a' + (c - 'a' + 13) % 26)
                    : c is >= 'A' and <= 'Z' ? (char)('A' + (c - 'A' + 13) % 26) : c;
            }
        });
    }
}
