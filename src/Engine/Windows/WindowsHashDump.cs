using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>A local account's password hashes (windows.hashdump), as Volatility and secretsdump print them.</summary>
/// <param name="User">Account name (from its V value, else from SAM\Domains\Account\Users\Names).</param>
/// <param name="Rid">Relative id.</param>
/// <param name="LmHash">LM hash, hex (the empty LM hash aad3b435... when none is stored; null: not readable).</param>
/// <param name="NtHash">NT hash, hex (the empty NT hash 31d6cfe0... when none is stored; null: not readable).</param>
/// <param name="Doubt">Why a hash is missing: which cell of which value did not read.</param>
public sealed record HashDumpRow(string? User, uint Rid, string? LmHash, string? NtHash, string? Doubt);

/// <summary>
/// windows.hashdump: the boot key from the SYSTEM hive (class names of Control\Lsa\JD, Skew1, GBG and Data under the
/// current control set), the hashed boot key from SAM\Domains\Account's F value (Key0 revision 1: RC4; 2: AES), and per
/// user (SAM\Domains\Account\Users\RID) the LM and NT hashes in the V value (hash revision 1: RC4, 2: AES), each
/// finally DES-decrypted with the RID's two keys. Every hive cell is read through the kernel's cell map.
/// </summary>
public static class WindowsHashDump
{
    /// <summary>The LM hash of the empty password (no LM hash stored).</summary>
    public const string EmptyLm = "aad3b435b51404eeaad3b435b51404ee";

    /// <summary>The NT hash of the empty password (no NT hash stored).</summary>
    public const string EmptyNt = "31d6cfe0d16ae931b73c59d7e0c089c0";

    private const int VHeader = 0xCC, VName = 0x0C, VLm = 0x9C, VNt = 0xA8, FKey0 = 0x68;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.hashdump",
            "Local account LM/NT hashes from the SAM hive, decrypted with the SYSTEM hive's boot key (RC4 and AES eras)", TargetOs.Windows),
            (c, a, ct) => HashDump(c.Windows(ct), ct));

    /// <summary>windows.hashdump.</summary>
    public static RowsReport<HashDumpRow> HashDump(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<RegistryHive> hives, List<string> notes) = RegistryHive.List(kernel, ct);
        var rows = new List<HashDumpRow>();
        var faults = new List<CellFault>();
        RegistryHive? system = SystemHive(hives);
        RegistryHive? sam = hives.FirstOrDefault(h => RegistryKeys.Open(h, @"SAM\Domains\Account", out _, []) is not null);
        if (sam is null && hives.FirstOrDefault(h => Named(h, "SAM")) is { } named)
        {
            // The SAM hive is there but its account key does not read: say which cell.
            RegistryKeys.Open(named, @"SAM\Domains\Account", out string? missing, faults);
            notes.Add($@"{named.Name}: SAM\Domains\Account does not read ({missing}); no hash can be read");
        }
        if (system is null || sam is null)
        {
            notes.Add($"{(system is null ? "no SYSTEM hive (with a Select key)" : "")}{(system is null && sam is null ? " and " : "")}" +
                      $"{(sam is null ? @"no SAM hive (with SAM\Domains\Account)" : "")} among the {hives.Count} hives read");
            return new RowsReport<HashDumpRow>("windows.hashdump", rows, notes);
        }
        byte[]? bootKey = BootKey(system, out string? why);
        if (bootKey is null)
        {
            notes.Add($"boot key: {why}");
            return new RowsReport<HashDumpRow>("windows.hashdump", rows, notes);
        }
        RegistryKey? account = RegistryKeys.Open(sam, @"SAM\Domains\Account", out _, faults);
        byte[]? hashedBootKey = HashedBootKey(sam, account!, bootKey, out why);
        if (hashedBootKey is null)
        {
            notes.Add($"hashed boot key: {why}");
        }
        RegistryKey? users = RegistryKeys.Open(sam, @"SAM\Domains\Account\Users", out string? problem, faults);
        if (users is null)
        {
            notes.Add($@"SAM\Domains\Account\Users: {problem}");
            return new RowsReport<HashDumpRow>("windows.hashdump", rows, notes);
        }
        List<RegistryKey> subkeys = RegistryKeys.Subkeys(sam, users, faults);
        Dictionary<uint, string> names = Names(sam, subkeys.FirstOrDefault(k => k.Name == "Names"), faults);
        foreach (RegistryKey user in subkeys)
        {
            if (user.Name == "Names" || !uint.TryParse(user.Name, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint rid))
            {
                continue;
            }
            rows.Add(User(sam, user, rid, names.GetValueOrDefault(rid), hashedBootKey, faults));
        }
        List<CellFault> keyFaults = [.. faults];
        // Accounts listed under Names whose own key did not read: their hashes are missing, say so by name.
        foreach ((uint rid, string name) in names.Where(n => rows.All(r => r.Rid != n.Key)).OrderBy(n => n.Key))
        {
            rows.Add(new HashDumpRow(name, rid, null, null,
                $"the account's key Users\\{rid:X8} did not read (unreadable cells under Users: {string.Join("; ", keyFaults.Select(f => f.ToString()))})"));
        }
        notes.AddRange(faults.Select(f => $"{sam.Name ?? "SAM"}: {f} (a user key or value there did not read: its hashes are missing)"));
        return new RowsReport<HashDumpRow>("windows.hashdump", rows, notes);
    }

    /// <summary>The SYSTEM hive among <paramref name="hives"/>: the one named SYSTEM with a Select key, else any with a Select key.</summary>
    public static RegistryHive? SystemHive(IReadOnlyList<RegistryHive> hives)
        => hives.FirstOrDefault(h => RegistryKeys.Open(h, "Select", out _, []) is not null && Named(h, "SYSTEM"))
            ?? hives.FirstOrDefault(h => RegistryKeys.Open(h, "Select", out _, []) is not null);

    internal static bool Named(RegistryHive hive, string file)
        => hive.Name is { } name && name.EndsWith(@"\" + file, StringComparison.OrdinalIgnoreCase);

    /// <summary>The boot key from the SYSTEM hive (null with the reason).</summary>
    public static byte[]? BootKey(RegistryHive system, out string? why)
    {
        var faults = new List<CellFault>();
        uint set = 1;
        if (RegistryKeys.Open(system, "Select", out _, faults) is { } select
            && RegistryKeys.Values(system, select, faults).FirstOrDefault(v => v.Name == "Current") is { Data.Length: >= 4 } current)
        {
            set = BinaryPrimitives.ReadUInt32LittleEndian(current.Data);
        }
        string lsa = $@"ControlSet{set:D3}\Control\Lsa";
        var classes = new List<string>();
        foreach (string part in new[] { "JD", "Skew1", "GBG", "Data" })
        {
            RegistryKey? key = RegistryKeys.Open(system, $@"{lsa}\{part}", out string? problem, faults);
            string? name = key is null ? null : RegistryKeys.ClassName(system, key, out CellFault? fault);
            if (string.IsNullOrEmpty(name))
            {
                why = $@"{lsa}\{part}: {problem ?? (faults.Count > 0 ? faults[^1].ToString() : "no class name")}";
                return null;
            }
            classes.Add(name);
        }
        byte[]? bootKey = SamCrypto.BootKey(classes);
        why = bootKey is null ? $"the class names of {lsa} are not hex digits: {string.Join(" ", classes)}" : null;
        return bootKey;
    }

    /// <summary>The hashed boot key from the domain's F value (null with the reason: unreadable, unknown revision, bad checksum).</summary>
    public static byte[]? HashedBootKey(RegistryHive sam, RegistryKey account, byte[] bootKey, out string? why)
    {
        ArgumentNullException.ThrowIfNull(bootKey);
        var faults = new List<CellFault>();
        RegistryValue? f = RegistryKeys.Values(sam, account, faults).FirstOrDefault(v => v.Name == "F");
        if (f?.Data is not { } data)
        {
            why = $@"SAM\Domains\Account F: {f?.Fault?.ToString() ?? (faults.Count > 0 ? faults[0].ToString() : "no F value")}";
            return null;
        }
        if (data.Length < FKey0 + 0x40)
        {
            why = $"F value of {data.Length} bytes is too short";
            return null;
        }
        ReadOnlySpan<byte> key0 = data.AsSpan(FKey0);
        uint revision = BinaryPrimitives.ReadUInt32LittleEndian(key0);
        if (revision == 1)
        {
            byte[] salt = key0.Slice(8, 16).ToArray();
            byte[] rc4Key = SamCrypto.Md5(salt, SamCrypto.Qwerty.ToArray(), bootKey, SamCrypto.Digits.ToArray());
            byte[] hashed = SamCrypto.Rc4(rc4Key, key0.Slice(24, 32));
            byte[] first = hashed[..16];
            byte[] check = SamCrypto.Md5(first, SamCrypto.Digits.ToArray(), first, SamCrypto.Qwerty.ToArray());
            if (!check.AsSpan().SequenceEqual(hashed.AsSpan(16, 16)))
            {
                why = "the RC4 hashed boot key fails its checksum (wrong boot key, or a syskey password is in use)";
                return null;
            }
            why = null;
            return first;
        }
        if (revision == 2)
        {
            int dataLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(key0[12..]);
            if (dataLength < 16 || 32 + dataLength > key0.Length)
            {
                why = $"AES key data of {dataLength} bytes does not fit the F value";
                return null;
            }
            why = null;
            return SamCrypto.AesCbc(bootKey, key0.Slice(16, 16), key0.Slice(32, dataLength), encrypt: false)[..16];
        }
        why = $"unknown Key0 revision {revision}";
        return null;
    }

    private static Dictionary<uint, string> Names(RegistryHive sam, RegistryKey? names, List<CellFault> faults)
    {
        var map = new Dictionary<uint, string>();
        if (names is null)
        {
            return map;
        }
        foreach (RegistryKey name in RegistryKeys.Subkeys(sam, names, faults))
        {
            // The default value's type is the RID.
            if (RegistryKeys.Values(sam, name, faults).FirstOrDefault(v => v.Name.Length == 0) is { } value)
            {
                map[value.RawType] = name.Name;
            }
        }
        return map;
    }

    private static HashDumpRow User(RegistryHive sam, RegistryKey user, uint rid, string? listedName, byte[]? hashedBootKey, List<CellFault> faults)
    {
        var local = new List<CellFault>();
        RegistryValue? v = RegistryKeys.Values(sam, user, local).FirstOrDefault(x => x.Name == "V");
        faults.AddRange(local);
        if (v?.Data is not { } data)
        {
            string reason = v?.Fault?.ToString() ?? (local.Count > 0 ? local[0].ToString() : "no V value");
            return new HashDumpRow(listedName, rid, null, null, $"V value of RID {rid} ({listedName ?? "name unknown"}) did not read: {reason}");
        }
        if (data.Length < VHeader)
        {
            return new HashDumpRow(listedName, rid, null, null, $"V value of {data.Length} bytes is shorter than its header");
        }
        string? name = Slice(data, VName) is { } n ? Encoding.Unicode.GetString(n) : listedName;
        if (hashedBootKey is null)
        {
            return new HashDumpRow(name, rid, null, null, "no hashed boot key (see the notes)");
        }
        try
        {
            string? lm = Hash(data, VLm, rid, hashedBootKey, SamCrypto.LmPassword, EmptyLm);
            string? nt = Hash(data, VNt, rid, hashedBootKey, SamCrypto.NtPassword, EmptyNt);
            return new HashDumpRow(name, rid, lm, nt, lm is null || nt is null ? "hash entry outside the V value" : null);
        }
        catch (CryptographicException e)
        {
            return new HashDumpRow(name, rid, null, null, $"decryption failed: {e.Message}");
        }
    }

    private static byte[]? Slice(byte[] v, int entry)
    {
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(entry)), length = BinaryPrimitives.ReadUInt32LittleEndian(v.AsSpan(entry + 4));
        ulong start = VHeader + (ulong)offset;
        return start + length > (ulong)v.Length ? null : v.AsSpan((int)start, (int)length).ToArray();
    }

    /// <summary>One hash of the V value: SAM_HASH (revision 1, RC4) or SAM_HASH_AES (revision 2); the empty hash when none is stored.</summary>
    private static string? Hash(byte[] v, int entry, uint rid, byte[] hashedBootKey, ReadOnlySpan<byte> constant, string empty)
    {
        byte[]? stored = Slice(v, entry);
        if (stored is null)
        {
            return null;
        }
        byte[] obfuscated;
        if (stored.Length >= 20 && stored[2] == 1)
        {
            byte[] ridBytes = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(ridBytes, rid);
            obfuscated = SamCrypto.Rc4(SamCrypto.Md5(hashedBootKey[..16], ridBytes, constant.ToArray()), stored.AsSpan(4, 16));
        }
        else if (stored.Length >= 24 + 16 && stored[2] == 2)
        {
            obfuscated = SamCrypto.AesCbc(hashedBootKey[..16], stored.AsSpan(8, 16), stored.AsSpan(24), encrypt: false)[..16];
        }
        else
        {
            return empty;
        }
        return System.Convert.ToHexString(SamCrypto.DesRid(rid, obfuscated, encrypt: false)).ToLowerInvariant();
    }
}
