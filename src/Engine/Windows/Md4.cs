using System.Buffers.Binary;

namespace CloudMem.Engine.Windows;

/// <summary>MD4 (RFC 1320), for NT hashes (.NET has none).</summary>
public static class Md4
{
    /// <summary>The MD4 digest of <paramref name="message"/>.</summary>
    public static byte[] Hash(ReadOnlySpan<byte> message)
    {
        int padded = ((message.Length + 8) / 64 + 1) * 64;
        byte[] m = new byte[padded];
        message.CopyTo(m);
        m[message.Length] = 0x80;
        BinaryPrimitives.WriteUInt64LittleEndian(m.AsSpan(padded - 8), (ulong)message.Length * 8);
        uint a = 0x67452301, b = 0xEFCDAB89, c = 0x98BADCFE, d = 0x10325476;
        uint[] x = new uint[16];
        for (int block = 0; block < padded; block += 64)
        {
            for (int i = 0; i < 16; i++)
            {
                x[i] = BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(block + i * 4));
            }
            uint aa = a, bb = b, cc = c, dd = d;
            static uint Rotl(uint v, int s) => (v << s) | (v >> (32 - s));
            int[] s1 = [3, 7, 11, 19], s2 = [3, 5, 9, 13], s3 = [3, 9, 11, 15];
            int[] order3 = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];
            for (int i = 0; i < 16; i++)
            {
                uint f = (b & c) | (~b & d);
                (a, b, c, d) = (d, Rotl(a + f + x[i], s1[i % 4]), b, c);
            }
            for (int i = 0; i < 16; i++)
            {
                uint g = (b & c) | (b & d) | (c & d);
                (a, b, c, d) = (d, Rotl(a + g + x[(i % 4) * 4 + i / 4] + 0x5A827999, s2[i % 4]), b, c);
            }
            for (int i = 0; i < 16; i++)
            {
                uint h = b ^ c ^ d;
                (a, b, c, d) = (d, Rotl(a + h + x[order3[i]] + 0x6ED9EBA1, s3[i % 4]), b, c);
            }
            a += aa;
            b += bb;
            c += cc;
            d += dd;
        }
        byte[] digest = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(digest, a);
        BinaryPrimitives.WriteUInt32LittleEndian(digest.AsSpan(4), b);
        BinaryPrimitives.WriteUInt32LittleEndian(digest.AsSpan(8), c);
        BinaryPrimitives.WriteUInt32LittleEndian(digest.AsSpan(12), d);
        return digest;
    }
}
