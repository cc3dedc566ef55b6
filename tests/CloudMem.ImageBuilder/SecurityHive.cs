using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Engine.Windows;

namespace CloudMem.ImageBuilder;

/// <summary>An LSA secret planted in the SECURITY hive: its name and the plain current and old values (null: none).</summary>
public sealed record LsaSecretTruth(string Name, byte[] Current, byte[]? Old, DateTime CurrentSet);

/// <summary>A domain logon planted in SECURITY\Cache, with the password its verifier is computed from.</summary>
public sealed record CachedLogonTruth(string Entry, string User, string Domain, string DnsDomain, uint Rid, string Password, DateTime LastWrite)
{
    /// <summary>DCC1 (mscash): MD4 of the NT hash followed by the lower-case user name in UTF-16LE.</summary>
    public byte[] Dcc1 => Md4.Hash([.. Md4.Hash(Encoding.Unicode.GetBytes(Password)), .. Encoding.Unicode.GetBytes(User.ToLowerInvariant())]);

    /// <summary>DCC2 (mscash2): PBKDF2-HMAC-SHA1 of DCC1, salted with the lower-case user name, 16 bytes.</summary>
    public byte[] Dcc2(int iterations) => Dcc2Of(Password, User, iterations);

    /// <summary>DCC2 of any password and user (for known-answer checks).</summary>
    public static byte[] Dcc2Of(string password, string user, int iterations)
    {
        byte[] dcc1 = Md4.Hash([.. Md4.Hash(Encoding.Unicode.GetBytes(password)), .. Encoding.Unicode.GetBytes(user.ToLowerInvariant())]);
        return Rfc2898DeriveBytes.Pbkdf2(dcc1, Encoding.Unicode.GetBytes(user.ToLowerInvariant()), iterations, HashAlgorithmName.SHA1, 16);
    }
}

/// <summary>
/// The SECURITY hive of the "registry" scenario, written by hivexregedit: Policy\PolEKList (Vista+: the LSA key list
/// AES-encrypted with the boot key) or Policy\PolSecretEncryptionKey (pre-Vista: RC4), Policy\Secrets\NAME\{CurrVal,
/// OldVal, CupdTime, OupdTime} for each of <see cref="Secrets"/>, and Cache\NL$1..NL$n with <see cref="Logons"/>
/// encrypted with NL$KM (AES-128-CBC, or RC4 with HMAC-MD5 before Vista), the rest empty slots. The encryption is
/// <see cref="LsaCrypto"/>'s writer half, following the documented algorithms; the test compares what is read back
/// with these planted values and with impacket's secretsdump on the same file.
/// </summary>
public static class SecurityHive
{
    /// <summary>The LSA key (Vista+: 32 bytes; pre-Vista the first 16 are used).</summary>
    public static readonly byte[] LsaKey = Convert.FromHexString("5F3A1C9E7B2D4F6081A3C5E7092B4D6F8E1A3C5B7D9F0E2C4A6B8D0F1E3C5A79");

    /// <summary>The LSA key's id (PolEKList's current key and every secret's EncKeyID).</summary>
    public static readonly Guid LsaKeyId = new("6c2b7f0e-3a91-4d58-b0e4-1f9a8c7d5e23");

    /// <summary>NL$KM: the 64-byte cache key.</summary>
    public static readonly byte[] NlKm = [.. Enumerable.Range(0, 64).Select(i => (byte)(0xA5 ^ (i * 29)))];

    /// <summary>The secrets (NL$KM among them).</summary>
    public static IReadOnlyList<LsaSecretTruth> Secrets { get; } =
    [
        new("DPAPI_SYSTEM", [1, 0, 0, 0, .. Enumerable.Range(0, 40).Select(i => (byte)(0x10 + i * 3))],
            [1, 0, 0, 0, .. Enumerable.Range(0, 40).Select(i => (byte)(0x80 + i * 5))], new DateTime(2024, 6, 1, 9, 0, 0, DateTimeKind.Utc)),
        new("$MACHINE.ACC", [.. Enumerable.Range(0, 240).Select(i => (byte)(i * 37 + 11))], null, new DateTime(2024, 6, 20, 3, 15, 0, DateTimeKind.Utc)),
        new("DefaultPassword", Encoding.Unicode.GetBytes("Winter2024!"), Encoding.Unicode.GetBytes("Autumn2023!"), new DateTime(2024, 5, 2, 8, 30, 0, DateTimeKind.Utc)),
        new("_SC_EvilSvc", Encoding.Unicode.GetBytes("Svc#Backdoor7"), null, new DateTime(2024, 7, 7, 10, 20, 0, DateTimeKind.Utc)),
        new("NL$KM", NlKm, null, new DateTime(2024, 1, 15, 10, 5, 0, DateTimeKind.Utc)),
    ];

    /// <summary>The cached domain logons (the other slots up to NL$10 are empty).</summary>
    public static IReadOnlyList<CachedLogonTruth> Logons { get; } =
    [
        new("NL$1", "jdoe", "CORP", "corp.example.com", 1104, "Autumn2024!", new DateTime(2024, 7, 6, 17, 45, 0, DateTimeKind.Utc)),
        new("NL$2", "Administrator", "CORP", "corp.example.com", 500, "DomainAdm1n#", new DateTime(2024, 7, 7, 9, 58, 0, DateTimeKind.Utc)),
    ];

    /// <summary>Groups in each cached logon (a record of about 3.3 KiB, as with a user in many groups: one record fills most of a bin).</summary>
    public const int Groups = 400;

    /// <summary>The IV of a cached logon's record (unique bytes that locate it in the hive file).</summary>
    public static byte[] IvOf(string entry) => MD5.HashData(Encoding.ASCII.GetBytes("iv-" + entry));

    /// <summary>The number of cache slots (NL$1..NL$10).</summary>
    public const int Slots = 10;

    /// <summary>The SECURITY hive: Vista+ (AES) or pre-Vista (RC4/DES) LSA encryption, for the boot key <paramref name="bootKey"/>.</summary>
    public static byte[] Hive(byte[] bootKey, bool vista)
    {
        ArgumentNullException.ThrowIfNull(bootKey);
        var reg = new RegText(@"HKEY_LOCAL_MACHINE\SECURITY").Key("Policy");
        if (vista)
        {
            reg.Key(@"Policy\PolEKList").Typed("", 0, LsaCrypto.Encrypt(bootKey, Guid.Empty, LsaCrypto.KeyListOf(LsaKeyId, LsaKey), Salt("PolEKList")));
        }
        else
        {
            reg.Key(@"Policy\PolSecretEncryptionKey").Typed("", 0, LsaCrypto.XpLsaKeyValue(bootKey, LsaKey, Salt("PolSecretEncryptionKey")));
        }
        byte[] Seal(byte[] secret, string salt) => vista ? LsaCrypto.Encrypt(LsaKey, LsaKeyId, secret, Salt(salt)) : LsaCrypto.XpEncrypt(LsaKey.AsSpan(0, 16), secret);
        foreach (LsaSecretTruth secret in Secrets)
        {
            string key = $@"Policy\Secrets\{secret.Name}";
            reg.Key($@"{key}\CurrVal").Typed("", 0, Seal(secret.Current, secret.Name + "cur"))
                .Key($@"{key}\CupdTime").Typed("", 0, BitConverter.GetBytes(secret.CurrentSet.ToFileTimeUtc()));
            if (secret.Old is { } old)
            {
                reg.Key($@"{key}\OldVal").Typed("", 0, Seal(old, secret.Name + "old"))
                    .Key($@"{key}\OupdTime").Typed("", 0, BitConverter.GetBytes(secret.CurrentSet.AddDays(-30).ToFileTimeUtc()));
            }
        }
        reg.Key("Cache").Typed("NL$Control", 3, [4, 0, 1, 0, 10, 0, 0, 0]);
        for (int slot = 1; slot <= Slots; slot++)
        {
            CachedLogonTruth? logon = Logons.FirstOrDefault(l => l.Entry == $"NL${slot}");
            reg.Typed($"NL${slot}", 3, logon is null ? new byte[0x60 + 0x60] : Record(logon, vista));
        }
        reg.Key(@"RXACT");
        return RegistryHiveFiles.Merge("SECURITY", @"HKEY_LOCAL_MACHINE\SECURITY", reg.ToString());
    }

    /// <summary>An NL_RECORD: the 0x60-byte header (name lengths, RID, last write, flags, IV, checksum) then the encrypted data.</summary>
    private static byte[] Record(CachedLogonTruth logon, bool vista)
    {
        byte[] user = Encoding.Unicode.GetBytes(logon.User), domain = Encoding.Unicode.GetBytes(logon.Domain), dns = Encoding.Unicode.GetBytes(logon.DnsDomain);
        // After the names: the group memberships (RID, attributes), as a real record carries them after its other strings.
        int names = 0x48 + WindowsCacheDump.Pad4(user.Length) + WindowsCacheDump.Pad4(domain.Length) + WindowsCacheDump.Pad4(dns.Length);
        byte[] plain = new byte[(names + Groups * 8 + 15) & ~15];
        for (int g = 0; g < Groups; g++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(plain.AsSpan(names + g * 8), 513u + (uint)g);
            BinaryPrimitives.WriteUInt32LittleEndian(plain.AsSpan(names + g * 8 + 4), 7);
        }
        (vista ? logon.Dcc2(WindowsCacheDump.DefaultIterations) : logon.Dcc1).CopyTo(plain, 0);
        user.CopyTo(plain, 0x48);
        domain.CopyTo(plain, 0x48 + WindowsCacheDump.Pad4(user.Length));
        dns.CopyTo(plain, 0x48 + WindowsCacheDump.Pad4(user.Length) + WindowsCacheDump.Pad4(domain.Length));
        byte[] iv = IvOf(logon.Entry);
        byte[] record = new byte[0x60 + plain.Length];
        Span<byte> r = record;
        BinaryPrimitives.WriteUInt16LittleEndian(r, (ushort)user.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(r[2..], (ushort)domain.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(r[16..], logon.Rid);
        BinaryPrimitives.WriteUInt32LittleEndian(r[20..], 513);                          // Domain Users
        BinaryPrimitives.WriteUInt32LittleEndian(r[24..], Groups);
        BinaryPrimitives.WriteUInt16LittleEndian(r[28..], (ushort)domain.Length);
        BinaryPrimitives.WriteInt64LittleEndian(r[32..], logon.LastWrite.ToFileTimeUtc());
        BinaryPrimitives.WriteUInt32LittleEndian(r[40..], 0x10006);                      // revision
        BinaryPrimitives.WriteUInt32LittleEndian(r[48..], 1);                            // encrypted
        BinaryPrimitives.WriteUInt16LittleEndian(r[60..], (ushort)dns.Length);
        iv.CopyTo(r[64..]);
        MD5.HashData(plain).CopyTo(r[80..]);
        LsaCrypto.CacheCrypt(NlKm, iv, plain, vista, encrypt: true).CopyTo(r[0x60..]);
        return record;
    }

    private static byte[] Salt(string what) => SHA256.HashData(Encoding.ASCII.GetBytes("salt-" + what));
}
