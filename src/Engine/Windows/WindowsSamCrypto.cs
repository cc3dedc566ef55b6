using System.Security.Cryptography;

namespace CloudMem.Engine.Windows;

/// <summary>
/// The SAM's cryptography (MS-SAMR 2.2.11.1 and the syskey scheme): the boot key from the four LSA class names, the
/// hashed boot key from the domain's F value (RC4 with MD5-derived keys, or AES-128-CBC), and per-user hash
/// obfuscation (RC4 or AES with the hashed boot key, then DES-ECB with two keys derived from the RID).
/// </summary>
public static class SamCrypto
{
    /// <summary>"!@#$%^&amp;*()qwertyUIOPAzxcvbnmQQQQQQQQQQQQ)(*@&amp;%" plus NUL.</summary>
    public static ReadOnlySpan<byte> Qwerty => "!@#$%^&*()qwertyUIOPAzxcvbnmQQQQQQQQQQQQ)(*@&%\0"u8;

    /// <summary>"0123456789" four times plus NUL.</summary>
    public static ReadOnlySpan<byte> Digits => "0123456789012345678901234567890123456789\0"u8;

    /// <summary>"NTPASSWORD" plus NUL.</summary>
    public static ReadOnlySpan<byte> NtPassword => "NTPASSWORD\0"u8;

    /// <summary>"LMPASSWORD" plus NUL.</summary>
    public static ReadOnlySpan<byte> LmPassword => "LMPASSWORD\0"u8;

    /// <summary>The order in which the 16 scrambled class-name bytes form the boot key.</summary>
    public static ReadOnlySpan<byte> BootKeyOrder => [8, 5, 4, 2, 11, 9, 13, 3, 0, 6, 1, 12, 14, 10, 15, 7];

    /// <summary>RC4 (encryption and decryption are the same).</summary>
    public static byte[] Rc4(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data)
    {
        Span<byte> s = stackalloc byte[256];
        for (int i = 0; i < 256; i++)
        {
            s[i] = (byte)i;
        }
        for (int i = 0, j = 0; i < 256; i++)
        {
            j = (j + s[i] + key[i % key.Length]) & 0xFF;
            (s[i], s[j]) = (s[j], s[i]);
        }
        byte[] output = new byte[data.Length];
        for (int n = 0, i = 0, j = 0; n < data.Length; n++)
        {
            i = (i + 1) & 0xFF;
            j = (j + s[i]) & 0xFF;
            (s[i], s[j]) = (s[j], s[i]);
            output[n] = (byte)(data[n] ^ s[(s[i] + s[j]) & 0xFF]);
        }
        return output;
    }

    /// <summary>MD5 of the concatenation of <paramref name="parts"/>.</summary>
    public static byte[] Md5(params byte[][] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        foreach (byte[] part in parts)
        {
            md5.AppendData(part);
        }
        return md5.GetHashAndReset();
    }

    /// <summary>The two DES keys of a RID (MS-SAMR 2.2.11.1.3): bytes I0 I1 I2 I3 I0 I1 I2 and I3 I0 I1 I2 I3 I0 I1, each spread to 8 bytes with odd parity.</summary>
    public static (byte[] Key1, byte[] Key2) RidKeys(uint rid)
    {
        byte[] i = BitConverter.GetBytes(rid);
        if (!BitConverter.IsLittleEndian)
        {
            Array.Reverse(i);
        }
        return (DesKey([i[0], i[1], i[2], i[3], i[0], i[1], i[2]]), DesKey([i[3], i[0], i[1], i[2], i[3], i[0], i[1]]));
    }

    /// <summary>A 7-byte key spread to an 8-byte DES key (7 bits per byte, odd parity in bit 0).</summary>
    public static byte[] DesKey(ReadOnlySpan<byte> s)
    {
        byte[] k =
        [
            (byte)(s[0] >> 1),
            (byte)(((s[0] & 0x01) << 6) | (s[1] >> 2)),
            (byte)(((s[1] & 0x03) << 5) | (s[2] >> 3)),
            (byte)(((s[2] & 0x07) << 4) | (s[3] >> 4)),
            (byte)(((s[3] & 0x0F) << 3) | (s[4] >> 5)),
            (byte)(((s[4] & 0x1F) << 2) | (s[5] >> 6)),
            (byte)(((s[5] & 0x3F) << 1) | (s[6] >> 7)),
            (byte)(s[6] & 0x7F),
        ];
        for (int n = 0; n < 8; n++)
        {
            int b = k[n] << 1;
            k[n] = (byte)(b | (System.Numerics.BitOperations.PopCount((uint)b) % 2 == 0 ? 1 : 0));
        }
        return k;
    }

    /// <summary>The two-block DES step of a hash (decrypt: obfuscated -> hash; encrypt: hash -> obfuscated).</summary>
    public static byte[] DesRid(uint rid, ReadOnlySpan<byte> sixteen, bool encrypt)
    {
        (byte[] k1, byte[] k2) = RidKeys(rid);
        byte[] output = new byte[16];
        Des(k1, sixteen[..8], output.AsSpan(0, 8), encrypt);
        Des(k2, sixteen[8..16], output.AsSpan(8, 8), encrypt);
        return output;
    }

    private static void Des(byte[] key, ReadOnlySpan<byte> input, Span<byte> output, bool encrypt)
    {
#pragma warning disable CA5351 // DES is what the SAM uses; this reads it, it protects nothing
        using var des = DES.Create();
#pragma warning restore CA5351
        des.Key = key;
        if (encrypt)
        {
            des.EncryptEcb(input, output, PaddingMode.None);
        }
        else
        {
            des.DecryptEcb(input, output, PaddingMode.None);
        }
    }

    /// <summary>AES-128-CBC without padding (decrypt or encrypt), as the SAM's AES era uses it.</summary>
    public static byte[] AesCbc(ReadOnlySpan<byte> key, ReadOnlySpan<byte> iv, ReadOnlySpan<byte> data, bool encrypt)
    {
        using var aes = Aes.Create();
        aes.Key = key.ToArray();
        int length = data.Length & ~15;
        return encrypt ? aes.EncryptCbc(data[..length], iv, PaddingMode.None) : aes.DecryptCbc(data[..length], iv, PaddingMode.None);
    }

    /// <summary>The boot key from the four class names (8 hex digits each), in JD, Skew1, GBG, Data order; null when not hex.</summary>
    public static byte[]? BootKey(IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        string hex = string.Concat(classNames.Select(c => c.Length >= 8 ? c[..8] : c));
        if (hex.Length != 32 || !hex.All(Uri.IsHexDigit))
        {
            return null;
        }
        byte[] scrambled = System.Convert.FromHexString(hex);
        byte[] key = new byte[16];
        for (int i = 0; i < 16; i++)
        {
            key[i] = scrambled[BootKeyOrder[i]];
        }
        return key;
    }

    /// <summary>The class names (JD, Skew1, GBG, Data order) that give <paramref name="bootKey"/> (for writers of test hives).</summary>
    public static string[] ClassNames(ReadOnlySpan<byte> bootKey)
    {
        byte[] scrambled = new byte[16];
        for (int i = 0; i < 16; i++)
        {
            scrambled[BootKeyOrder[i]] = bootKey[i];
        }
        string hex = System.Convert.ToHexString(scrambled).ToLowerInvariant();
        return [hex[..8], hex[8..16], hex[16..24], hex[24..]];
    }
}
