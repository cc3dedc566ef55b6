using System.Buffers.Binary;
using System.Security.Cryptography;

namespace CloudMem.Engine.Windows;

/// <summary>
/// The LSA's secret encryption in the SECURITY hive (MS-LSAD 5.1.2 and the schemes mimikatz and secretsdump document).
/// Vista and later: Policy\PolEKList holds the LSA key list, AES-256 encrypted with SHA-256(boot key, 1000 x the first
/// 32 bytes of the data) one 16-byte block at a time with a zero IV; each secret (LSA_SECRET: version, key id, algorithm,
/// flags, data) is encrypted the same way with the LSA key; cached logons are AES-128-CBC with the first 16 bytes of the
/// NL$KM secret and the record's IV. Before Vista: Policy\PolSecretEncryptionKey is RC4 with MD5(boot key, 1000 x its
/// salt), secrets are DES-ECB with 7-byte keys taken in turn from the LSA key, cached logons are RC4 with
/// HMAC-MD5(NL$KM, IV). Each function has its inverse for writers of test hives.
/// </summary>
public static class LsaCrypto
{
    /// <summary>Bytes of an LSA_SECRET header before its encrypted data (version, key id, algorithm, flags).</summary>
    public const int SecretHeader = 28;

    /// <summary>Bytes of the encrypted data that salt the per-secret AES key.</summary>
    public const int KeySalt = 32;

    /// <summary>The AES-256 key of one Vista+ secret: SHA-256 of <paramref name="key"/> then 1000 copies of <paramref name="salt"/>.</summary>
    public static byte[] SecretKey(ReadOnlySpan<byte> key, ReadOnlySpan<byte> salt) => Stretch(HashAlgorithmName.SHA256, key, salt);

    /// <summary>The hash of <paramref name="key"/> followed by 1000 copies of <paramref name="salt"/>.</summary>
    private static byte[] Stretch(HashAlgorithmName algorithm, ReadOnlySpan<byte> key, ReadOnlySpan<byte> salt)
    {
        using var hash = IncrementalHash.CreateHash(algorithm);
        hash.AppendData(key);
        for (int i = 0; i < 1000; i++)
        {
            hash.AppendData(salt);
        }
        return hash.GetHashAndReset();
    }

    /// <summary>AES-256 of each 16-byte block on its own (CBC with a zero IV restarted per block); a short tail is zero padded.</summary>
    public static byte[] AesBlocks(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, bool encrypt)
    {
        using var aes = Aes.Create();
        aes.Key = key.ToArray();
        byte[] padded = new byte[(data.Length + 15) & ~15];
        data.CopyTo(padded);
        return encrypt ? aes.EncryptEcb(padded, PaddingMode.None) : aes.DecryptEcb(padded, PaddingMode.None);
    }

    /// <summary>
    /// Decrypts a Vista+ LSA_SECRET value with <paramref name="key"/> (the boot key for PolEKList, the LSA key for
    /// secrets) and returns its LSA_SECRET_BLOB's secret (null with the reason when the value or blob is malformed).
    /// </summary>
    public static byte[]? Decrypt(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, out string? why)
    {
        if (value.Length < SecretHeader + KeySalt + 16)
        {
            why = $"LSA_SECRET of {value.Length} bytes is shorter than its header and one block";
            return null;
        }
        ReadOnlySpan<byte> data = value[SecretHeader..];
        byte[] plain = AesBlocks(SecretKey(key, data[..KeySalt]), data[KeySalt..], encrypt: false);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(plain);
        if (16 + (ulong)length > (ulong)plain.Length)
        {
            why = $"decrypted blob claims {length} bytes but holds {plain.Length - 16} (wrong key?)";
            return null;
        }
        why = null;
        return plain.AsSpan(16, (int)length).ToArray();
    }

    /// <summary>The key id (EncKeyID) of a Vista+ LSA_SECRET value (null when too short).</summary>
    public static Guid? KeyId(ReadOnlySpan<byte> value) => value.Length >= 20 ? new Guid(value.Slice(4, 16)) : null;

    /// <summary>An LSA_SECRET value holding <paramref name="secret"/> encrypted with <paramref name="key"/> under <paramref name="keyId"/> (test writers).</summary>
    public static byte[] Encrypt(ReadOnlySpan<byte> key, Guid keyId, ReadOnlySpan<byte> secret, ReadOnlySpan<byte> salt)
    {
        byte[] blob = new byte[(16 + secret.Length + 15) & ~15];
        BinaryPrimitives.WriteUInt32LittleEndian(blob, (uint)secret.Length);
        secret.CopyTo(blob.AsSpan(16));
        byte[] value = new byte[SecretHeader + KeySalt + blob.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(value, 1);
        keyId.TryWriteBytes(value.AsSpan(4));
        BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(20), 1);
        salt[..KeySalt].CopyTo(value.AsSpan(SecretHeader));
        AesBlocks(SecretKey(key, salt[..KeySalt]), blob, encrypt: true).CopyTo(value, SecretHeader + KeySalt);
        return value;
    }

    /// <summary>
    /// The keys of a decrypted PolEKList (NT6 system keys: version, current key id, type, count, then per key its id,
    /// type, size and bytes), and the current key's id. Null with the reason when malformed.
    /// </summary>
    public static (Guid Current, Dictionary<Guid, byte[]> Keys)? KeyList(ReadOnlySpan<byte> list, out string? why)
    {
        if (list.Length < 28)
        {
            why = $"LSA key list of {list.Length} bytes is shorter than its header";
            return null;
        }
        var current = new Guid(list.Slice(4, 16));
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(list[24..]);
        var keys = new Dictionary<Guid, byte[]>();
        int at = 28;
        for (uint i = 0; i < Math.Min(count, 64u); i++)
        {
            if (at + 24 > list.Length)
            {
                break;
            }
            uint size = BinaryPrimitives.ReadUInt32LittleEndian(list[(at + 20)..]);
            if (size > 256 || at + 24 + (int)size > list.Length)
            {
                break;
            }
            keys[new Guid(list.Slice(at, 16))] = list.Slice(at + 24, (int)size).ToArray();
            at += 24 + (int)size;
        }
        if (keys.Count == 0)
        {
            why = $"LSA key list holds none of its {count} keys";
            return null;
        }
        why = null;
        return (current, keys);
    }

    /// <summary>A key list of one key (test writers).</summary>
    public static byte[] KeyListOf(Guid id, ReadOnlySpan<byte> key)
    {
        byte[] list = new byte[28 + 24 + key.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(list, 1);
        id.TryWriteBytes(list.AsSpan(4));
        BinaryPrimitives.WriteUInt32LittleEndian(list.AsSpan(20), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(list.AsSpan(24), 1);
        id.TryWriteBytes(list.AsSpan(28));
        BinaryPrimitives.WriteUInt32LittleEndian(list.AsSpan(44), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(list.AsSpan(48), (uint)key.Length);
        key.CopyTo(list.AsSpan(52));
        return list;
    }

    /// <summary>Offsets of the pre-Vista PolSecretEncryptionKey value: 12-byte header, 48 RC4-encrypted bytes, 16-byte salt.</summary>
    private const int XpKeyData = 12, XpKeySalt = 60, XpKeyLength = 76;

    /// <summary>The pre-Vista LSA key from PolSecretEncryptionKey (null when too short).</summary>
    public static byte[]? XpLsaKey(ReadOnlySpan<byte> bootKey, ReadOnlySpan<byte> value)
    {
        if (value.Length < XpKeyLength)
        {
            return null;
        }
        byte[] plain = SamCrypto.Rc4(XpRc4Key(bootKey, value.Slice(XpKeySalt, 16)), value.Slice(XpKeyData, 48));
        return plain[0x10..0x20];
    }

    /// <summary>A PolSecretEncryptionKey value giving <paramref name="lsaKey"/> (test writers).</summary>
    public static byte[] XpLsaKeyValue(ReadOnlySpan<byte> bootKey, ReadOnlySpan<byte> lsaKey, ReadOnlySpan<byte> salt)
    {
        byte[] value = new byte[XpKeyLength];
        BinaryPrimitives.WriteUInt32LittleEndian(value, 1);
        byte[] plain = new byte[48];
        lsaKey[..16].CopyTo(plain.AsSpan(0x10));
        salt[..16].CopyTo(value.AsSpan(XpKeySalt));
        SamCrypto.Rc4(XpRc4Key(bootKey, salt[..16]), plain).CopyTo(value, XpKeyData);
        return value;
    }

    private static byte[] XpRc4Key(ReadOnlySpan<byte> bootKey, ReadOnlySpan<byte> salt) => Stretch(HashAlgorithmName.MD5, bootKey, salt);

    /// <summary>
    /// Decrypts a pre-Vista secret value (its first u32 is the encrypted length at its end): DES-ECB, each 8-byte block
    /// with the next 7 bytes of the LSA key (wrapping), giving LSA_SECRET_XP (length, version, secret).
    /// </summary>
    public static byte[]? XpDecrypt(ReadOnlySpan<byte> lsaKey, ReadOnlySpan<byte> value, out string? why)
    {
        uint size = value.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(value) : uint.MaxValue;
        if (size > (uint)value.Length || size < 8)
        {
            why = $"pre-Vista secret of {value.Length} bytes claims {size} encrypted bytes";
            return null;
        }
        byte[] plain = XpDes(lsaKey, value[^(int)size..], encrypt: false);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(plain);
        if (8 + (ulong)length > (ulong)plain.Length)
        {
            why = $"decrypted secret claims {length} bytes but holds {plain.Length - 8} (wrong key?)";
            return null;
        }
        why = null;
        return plain.AsSpan(8, (int)length).ToArray();
    }

    /// <summary>A pre-Vista secret value holding <paramref name="secret"/> (test writers).</summary>
    public static byte[] XpEncrypt(ReadOnlySpan<byte> lsaKey, ReadOnlySpan<byte> secret)
    {
        byte[] plain = new byte[(8 + secret.Length + 7) & ~7];
        BinaryPrimitives.WriteUInt32LittleEndian(plain, (uint)secret.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(plain.AsSpan(4), 1);
        secret.CopyTo(plain.AsSpan(8));
        byte[] value = new byte[8 + plain.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(value, (uint)plain.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(4), 1);
        XpDes(lsaKey, plain, encrypt: true).CopyTo(value, 8);
        return value;
    }

    private static byte[] XpDes(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, bool encrypt)
    {
        byte[] output = new byte[data.Length & ~7];
        int position = 0;
        for (int block = 0; block + 8 <= data.Length; block += 8)
        {
            using var des = CreateDes(SamCrypto.DesKey(key.Slice(position, 7)));
            if (encrypt)
            {
                des.EncryptEcb(data.Slice(block, 8), output.AsSpan(block, 8), PaddingMode.None);
            }
            else
            {
                des.DecryptEcb(data.Slice(block, 8), output.AsSpan(block, 8), PaddingMode.None);
            }
            // The next 7 bytes; when fewer than 7 remain, restart at the offset equal to the count left.
            position += 7;
            int left = key.Length - position;
            if (left < 7)
            {
                position = left;
            }
        }
        return output;
    }

#pragma warning disable CA5351 // DES is what pre-Vista LSA secrets use; this reads them, it protects nothing
    private static DES CreateDes(byte[] key)
    {
        var des = DES.Create();
        des.Key = key;
        return des;
    }
#pragma warning restore CA5351

    /// <summary>Decrypts (or encrypts) a cached logon's data: AES-128-CBC with NL$KM[0..16] and the IV (Vista+), or RC4 with HMAC-MD5(NL$KM, IV).</summary>
    public static byte[] CacheCrypt(ReadOnlySpan<byte> nlkm, ReadOnlySpan<byte> iv, ReadOnlySpan<byte> data, bool vista, bool encrypt)
    {
        if (!vista)
        {
#pragma warning disable CA5351 // HMAC-MD5 keys pre-Vista cached logons
            return SamCrypto.Rc4(HMACMD5.HashData(nlkm.ToArray(), iv.ToArray()), data);
#pragma warning restore CA5351
        }
        using var aes = Aes.Create();
        aes.Key = nlkm[..16].ToArray();
        byte[] padded = new byte[(data.Length + 15) & ~15];
        data.CopyTo(padded);
        return encrypt ? aes.EncryptCbc(padded, iv, PaddingMode.None) : aes.DecryptCbc(padded, iv, PaddingMode.None);
    }
}
