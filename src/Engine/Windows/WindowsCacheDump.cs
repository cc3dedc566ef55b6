using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>The kind of a cached logon's verifier.</summary>
public enum CachedHashKind
{
    /// <summary>DCC1 (mscash, before Vista): MD4(NT hash, lower-case user name); hashcat mode 1100.</summary>
    Dcc1,
    /// <summary>DCC2 (mscash2, Vista and later): PBKDF2-HMAC-SHA1 of DCC1 salted with the user name; hashcat mode 2100.</summary>
    Dcc2,
}

/// <summary>A domain logon cached in SECURITY\Cache (windows.cachedump).</summary>
/// <param name="Entry">The value name (NL$1, NL$2, ...).</param>
/// <param name="User">The user name (null: the entry did not read or decrypt).</param>
/// <param name="Domain">The NetBIOS domain name.</param>
/// <param name="DnsDomain">The DNS domain name.</param>
/// <param name="Rid">The user's RID (NL_RECORD UserId).</param>
/// <param name="LastWrite">When the entry was written (the last successful domain logon).</param>
/// <param name="Kind">DCC1 or DCC2.</param>
/// <param name="Iterations">PBKDF2 iterations of a DCC2 hash (NL$IterationCount, default 10240); null for DCC1.</param>
/// <param name="Hash">The cached verifier, hex.</param>
/// <param name="Hashcat">The hash as hashcat takes it: $DCC2$ITERATIONS#user#hash (mode 2100) or hash:user (mode 1100).</param>
/// <param name="Doubt">Why the entry could not be read: the cell that is not in memory, or the decryption failure.</param>
public sealed record CachedLogonRow(string Entry, string? User, string? Domain, string? DnsDomain, uint? Rid, DateTimeOffset? LastWrite,
    CachedHashKind? Kind, int? Iterations, string? Hash, string? Hashcat, string? Doubt);

/// <summary>
/// windows.cachedump: the domain cached credentials of SECURITY\Cache. Each NL$n value is an NL_RECORD (name lengths,
/// RID, last write, flags, 16-byte IV, checksum, encrypted data); its data decrypts with the NL$KM LSA secret
/// (<see cref="LsaCrypto.CacheCrypt"/>) to the verifier (16 bytes), then at 0x48 the user, domain and DNS domain names
/// (each padded to 4 bytes). Empty slots (zero IV) are counted in a note.
/// </summary>
public static class WindowsCacheDump
{
    private const int UserLength = 0, DomainLength = 2, UserId = 16, LastWrite = 32, Flags = 48, DnsLength = 60, Iv = 64, Data = 96;
    private const int NamesAt = 0x48;

    /// <summary>DCC2's iteration count when NL$IterationCount is absent.</summary>
    public const int DefaultIterations = 10240;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.cachedump",
            "Domain cached logons (SECURITY\\Cache NL$n, decrypted with NL$KM): user, domain, DCC2/DCC1 hash as hashcat takes it",
            TargetOs.Windows),
            (c, a, ct) => CacheDump(c.Windows(ct), ct));

    /// <summary>windows.cachedump.</summary>
    public static RowsReport<CachedLogonRow> CacheDump(WindowsKernel kernel, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<CachedLogonRow>();
        WindowsLsaDump.LsaKeys? keys = WindowsLsaDump.Keys(kernel, notes, ct);
        if (keys is null)
        {
            return new RowsReport<CachedLogonRow>("windows.cachedump", rows, notes);
        }
        RegistryHive security = keys.Security;
        var faults = new List<CellFault>();
        RegistryKey? cache = WindowsLsaDump.Open(security, "Cache", faults, out string? problem);
        if (cache is null)
        {
            notes.Add($@"{security.Name}: Cache: {problem} (no cached logons)");
            return new RowsReport<CachedLogonRow>("windows.cachedump", rows, notes);
        }
        List<RegistryValue> values = RegistryKeys.Values(security, cache, faults);
        notes.AddRange(faults.Select(f => $@"{security.Name}: a value under Cache did not read: {f} (a cached logon may be missing)"));
        byte[]? nlkm = WindowsLsaDump.DefaultValue(security, @"Policy\Secrets\NL$KM\CurrVal", out problem) is { } encrypted
            ? keys.Decrypt(encrypted, out problem) : null;
        int iterations = DefaultIterations;
        if (values.FirstOrDefault(v => v.Name.Equals("NL$IterationCount", StringComparison.OrdinalIgnoreCase)) is { Data.Length: >= 4 } count)
        {
            uint raw = BinaryPrimitives.ReadUInt32LittleEndian(count.Data);
            iterations = raw > 10240 ? (int)(raw & 0xFFFFFC00) : (int)raw * 1024;
        }
        int empty = 0;
        foreach (RegistryValue value in values.Where(v => v.Name.StartsWith("NL$", StringComparison.OrdinalIgnoreCase)
            && int.TryParse(v.Name.AsSpan(3), NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            ct.ThrowIfCancellationRequested();
            if (value.Data is not { } record)
            {
                rows.Add(Unread(value.Name, $"the entry did not read: {value.Fault}"));
                continue;
            }
            if (record.Length < Data || record.AsSpan(Iv, 16).IndexOfAnyExcept((byte)0) < 0)
            {
                empty++;
                continue;
            }
            if (nlkm is null)
            {
                rows.Add(Unread(value.Name, $"NL$KM (the cache key) did not read or decrypt: {problem}"));
                continue;
            }
            rows.Add(Entry(value.Name, record, nlkm, keys.Vista, iterations));
        }
        if (empty > 0)
        {
            notes.Add($"{empty} empty cache slot(s)");
        }
        return new RowsReport<CachedLogonRow>("windows.cachedump", rows, notes);
    }

    private static CachedLogonRow Unread(string entry, string why) => new(entry, null, null, null, null, null, null, null, null, null, why);

    private static CachedLogonRow Entry(string entry, byte[] record, byte[] nlkm, bool vista, int iterations)
    {
        ReadOnlySpan<byte> r = record;
        if ((BinaryPrimitives.ReadUInt32LittleEndian(r[Flags..]) & 1) == 0)
        {
            return Unread(entry, "the entry is not marked encrypted (flags bit 0 clear); not decoded");
        }
        byte[] plain = LsaCrypto.CacheCrypt(nlkm, r.Slice(Iv, 16), r[Data..], vista, encrypt: false);
        int user = BinaryPrimitives.ReadUInt16LittleEndian(r[UserLength..]), domain = BinaryPrimitives.ReadUInt16LittleEndian(r[DomainLength..]);
        int dns = BinaryPrimitives.ReadUInt16LittleEndian(r[DnsLength..]);
        int userAt = NamesAt, domainAt = userAt + Pad4(user), dnsAt = domainAt + Pad4(domain);
        if (dnsAt + dns > plain.Length)
        {
            return Unread(entry, $"names of {user}+{domain}+{dns} bytes do not fit the {plain.Length} decrypted bytes");
        }
        string Text(int at, int length) => Encoding.Unicode.GetString(plain, at, length & ~1);
        string name = Text(userAt, user);
        string hash = WindowsLsaDump.Hex(plain.AsSpan(0, 16));
        CachedHashKind kind = vista ? CachedHashKind.Dcc2 : CachedHashKind.Dcc1;
        string hashcat = vista ? $"$DCC2${iterations}#{name}#{hash}" : $"{hash}:{name}";
        return new CachedLogonRow(entry, name, Text(domainAt, domain), Text(dnsAt, dns), BinaryPrimitives.ReadUInt32LittleEndian(r[UserId..]),
            RegistryKeys.FileTime(BinaryPrimitives.ReadInt64LittleEndian(r[LastWrite..])), kind, vista ? iterations : null, hash, hashcat, null);
    }

    /// <summary>A name length rounded up to 4 bytes, as the record pads its names.</summary>
    public static int Pad4(int length) => (length + 3) & ~3;
}
