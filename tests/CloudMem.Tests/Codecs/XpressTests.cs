using System.Buffers.Binary;
using System.Text;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers.Codecs;

namespace CloudMem.Tests.Codecs;

/// <summary>
/// Tests for <see cref="XpressLz77"/> and <see cref="XpressHuffman"/>: the worked examples of [MS-XCA] section 3,
/// round trips through small test-only compressors (plain LZ77, and LZ77+Huffman with a flat 9-bit code),
/// and hostile inputs (every truncation, corruptions, random garbage).
/// </summary>
public sealed partial class XpressTests
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz";

    // [MS-XCA] 3.1: the alphabet as 26 literals; the unused flag bits are set.
    private const string PlainAlphabetHex = "3f000000" + "6162636465666768696a6b6c6d6e6f707172737475767778797a";

    // [MS-XCA] 3.1: "abc" x 100 as three literals and one match of 297 bytes at offset 3.
    private const string PlainAbcHex = "ffffff1f" + "616263" + "1700" + "0f" + "ff" + "2601";

    // [MS-XCA] 3.2: the alphabet as literals plus an end-of-stream symbol (256 table bytes, then the bit stream).
    private static readonly string HuffmanAlphabetHex =
        new string('0', 96) + "50555555555555555555554544" + "04" + new string('0', 132) + "04" + new string('0', 254)
        + "d8523ed794115be9195ff9d67cdf8d0400000000";

    // [MS-XCA] 3.2: "abc" x 100 as a, b, c, one match (distance 3, length 297, escaped as 0xff then 0x0126) and EOF.
    private static readonly string HuffmanAbcHex =
        new string('0', 96) + "3023" + new string('0', 156) + "02" + new string('0', 28) + "20" + new string('0', 224)
        + "a8dc0000ff2601";

    private static byte[] Hex(string hex) => Convert.FromHexString(hex);

    private static string Abc100 => string.Concat(Enumerable.Repeat("abc", 100));

    // ---------------------------------------------------------------- spec examples

    [Fact]
    public void Plain_SpecAlphabetExample()
    {
        byte[] source = Hex(PlainAlphabetHex);
        Assert.Equal(30, source.Length);
        var output = new byte[26];
        Assert.Equal(26, XpressLz77.Decompress(source, output));
        Assert.Equal(Alphabet, Encoding.ASCII.GetString(output));
    }

    [Fact]
    public void Plain_SpecAbcExample()
    {
        var output = new byte[300];
        Assert.Equal(300, XpressLz77.Decompress(Hex(PlainAbcHex), output));
        Assert.Equal(Abc100, Encoding.ASCII.GetString(output));
    }

    [Fact]
    public void Plain_LargerDestinationStopsAtEndOfInput()
    {
        var output = new byte[400];
        Assert.Equal(300, XpressLz77.Decompress(Hex(PlainAbcHex), output));
    }

    [Fact]
    public void Huffman_SpecAlphabetExample()
    {
        byte[] source = Hex(HuffmanAlphabetHex);
        Assert.Equal(276, source.Length);
        var output = new byte[26];
        Assert.Equal(26, XpressHuffman.Decompress(source, output));
        Assert.Equal(Alphabet, Encoding.ASCII.GetString(output));
    }

    [Fact]
    public void Huffman_SpecAlphabetExample_EndSymbolStopsEarly()
    {
        // With room to spare the decoder meets the end-of-stream symbol (256) once the input is used up.
        var output = new byte[64];
        int written = XpressHuffman.Decompress(Hex(HuffmanAlphabetHex), output);
        Assert.True(written == 26 || written == -1, $"unexpected count {written}");
    }

    [Fact]
    public void Huffman_SpecAbcExample()
    {
        byte[] source = Hex(HuffmanAbcHex);
        Assert.Equal(263, source.Length);
        var output = new byte[300];
        Assert.Equal(300, XpressHuffman.Decompress(source, output));
        Assert.Equal(Abc100, Encoding.ASCII.GetString(output));
    }

    [Fact]
    public void Huffman_AbcThroughTestEncoder()
    {
        // The same shape through the test encoder's flat 9-bit code: a, b, c, then a 297-byte match at offset 3.
        byte[] compressed = HuffmanEncode(Encoding.ASCII.GetBytes(Abc100));
        var output = new byte[300];
        Assert.Equal(300, XpressHuffman.Decompress(compressed, output));
        Assert.Equal(Abc100, Encoding.ASCII.GetString(output));
    }

    // ---------------------------------------------------------------- round trips

    public static TheoryData<int, int> RandomCases() => new()
    {
        { 1, 0 }, { 2, 1 }, { 3, 31 }, { 4, 32 }, { 5, 33 }, { 6, 4096 }, { 7, 65536 }, { 8, 65537 }, { 9, 200_000 },
    };

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void Plain_RoundTripsRandomData(int seed, int size)
    {
        foreach (byte[] data in Variants(seed, size))
        {
            AssertPlainRoundTrip(data);
        }
    }

    [Theory]
    [MemberData(nameof(RandomCases))]
    public void Huffman_RoundTripsRandomData(int seed, int size)
    {
        foreach (byte[] data in Variants(seed, size))
        {
            AssertHuffmanRoundTrip(data);
        }
    }

    [Fact]
    public void Plain_RoundTripsLongRunsUsingEveryLengthEscape()
    {
        // Runs of 10..24 (half-byte), 25..279 (byte), up to 65538 (word) and beyond (dword).
        foreach (int run in new[] { 10, 24, 25, 279, 280, 4096, 65538, 65539, 150_000 })
        {
            var data = new byte[run + 7];
            data.AsSpan(0, 7).Fill(0x41);
            data.AsSpan(7).Fill(0x5A);
            AssertPlainRoundTrip(data);
            AssertHuffmanRoundTrip(data);
        }
    }

    [Fact]
    public void RoundTripsRealPages()
    {
        foreach (byte[] page in Pages())
        {
            AssertPlainRoundTrip(page);
            AssertHuffmanRoundTrip(page);
        }
        byte[] all = Pages().SelectMany(p => p).ToArray();
        AssertPlainRoundTrip(all);
        AssertHuffmanRoundTrip(all);
    }

    // ---------------------------------------------------------------- hostile input

    [Fact]
    public void Plain_EveryTruncationReturnsCountOrFailure()
    {
        var inputs = new List<(byte[] Compressed, int Size)>
        {
            (Hex(PlainAlphabetHex), 26),
            (Hex(PlainAbcHex), 300),
        };
        byte[] sample = Pages().First();
        inputs.Add((PlainCompress(sample), sample.Length));
        foreach (var (compressed, size) in inputs)
        {
            var output = new byte[size];
            for (int cut = 0; cut < compressed.Length; cut++)
            {
                int written = XpressLz77.Decompress(compressed.AsSpan(0, cut), output);
                Assert.InRange(written, -1, size);
            }
        }
    }

    [Fact]
    public void Huffman_EveryTruncationReturnsCountOrFailure()
    {
        var inputs = new List<(byte[] Compressed, int Size)>
        {
            (Hex(HuffmanAlphabetHex), 26),
            (Hex(HuffmanAbcHex), 300),
            (HuffmanEncode(Encoding.ASCII.GetBytes(Abc100)), 300),
        };
        byte[] sample = Pages().First();
        inputs.Add((HuffmanEncode(sample), sample.Length));
        foreach (var (compressed, size) in inputs)
        {
            var output = new byte[size];
            for (int cut = 0; cut < compressed.Length; cut++)
            {
                int written = XpressHuffman.Decompress(compressed.AsSpan(0, cut), output);
                Assert.InRange(written, -1, size);
                if (cut < 256)
                {
                    Assert.Equal(-1, written);
                }
            }
        }
    }

    [Fact]
    public void GarbageAndCorruptionNeverThrow()
    {
        var random = new Random(1234);
        var output = new byte[8192];
        for (int i = 0; i < 2000; i++)
        {
            var garbage = new byte[random.Next(0, 1200)];
            random.NextBytes(garbage);
            Assert.InRange(XpressLz77.Decompress(garbage, output), -1, output.Length);
            Assert.InRange(XpressHuffman.Decompress(garbage, output), -1, output.Length);
        }

        byte[] data = Pages().First();
        byte[] plain = PlainCompress(data);
        byte[] huff = HuffmanEncode(data);
        var page = new byte[data.Length];
        for (int i = 0; i < 2000; i++)
        {
            byte[] p = (byte[])plain.Clone();
            p[random.Next(p.Length)] ^= (byte)(1 << random.Next(8));
            Assert.InRange(XpressLz77.Decompress(p, page), -1, page.Length);
            byte[] h = (byte[])huff.Clone();
            h[random.Next(h.Length)] ^= (byte)(1 << random.Next(8));
            Assert.InRange(XpressHuffman.Decompress(h, page), -1, page.Length);
        }
    }

    [Fact]
    public void MatchBeforeStartOfOutputFails()
    {
        // A set flag then token 0x0000 (offset 1, length 3) with nothing written yet.
        Assert.Equal(-1, XpressLz77.Decompress(Hex("00000080" + "0000"), new byte[8]));

        // Huffman: only symbol 256+16 (offset 2^1.., length 3) has a code, so the first symbol is a bad match.
        var table = new byte[256 + 8];
        table[(256 + 16) / 2] = 0x01;
        table[0] = 0x01;
        table[256] = 0xFF;
        table[257] = 0xFF;
        Assert.Equal(-1, XpressHuffman.Decompress(table, new byte[8]));
    }

    [Fact]
    public void Huffman_IncompleteOversubscribedOrEmptyTableFails()
    {
        Assert.Equal(-1, XpressHuffman.Decompress(new byte[300], new byte[4]));
        var table = new byte[300];
        table[0] = 0x11; // symbols 0 and 1 with length 1: complete
        Assert.Equal(4, XpressHuffman.Decompress(table, new byte[4]));
        table[1] = 0x01; // symbol 2 with length 1 too: over-subscribed
        Assert.Equal(-1, XpressHuffman.Decompress(table, new byte[4]));
        table[1] = 0x00;
        table[0] = 0x21; // symbol 0 length 1, symbol 1 length 2: incomplete ([MS-XCA] 2.2.4 rejects it)
        Assert.Equal(-1, XpressHuffman.Decompress(table, new byte[4]));
    }

    // ---------------------------------------------------------------- helpers

    private static void AssertPlainRoundTrip(byte[] data)
    {
        byte[] compressed = PlainCompress(data);
        var output = new byte[data.Length];
        Assert.Equal(data.Length, XpressLz77.Decompress(compressed, output));
        Assert.True(data.AsSpan().SequenceEqual(output), "plain LZ77 round trip differs");
    }

    private static void AssertHuffmanRoundTrip(byte[] data)
    {
        byte[] compressed = HuffmanEncode(data);
        var output = new byte[data.Length];
        Assert.Equal(data.Length, XpressHuffman.Decompress(compressed, output));
        Assert.True(data.AsSpan().SequenceEqual(output), "LZ77+Huffman round trip differs");
    }

    private static IEnumerable<byte[]> Variants(int seed, int size)
    {
        var random = new Random(seed);
        var noise = new byte[size];
        random.NextBytes(noise);
        yield return noise;

        // Compressible: a small alphabet with repeated phrases at random distances.
        var text = new byte[size];
        for (int i = 0; i < size; i++)
        {
            if (i > 16 && random.Next(4) == 0)
            {
                int distance = random.Next(1, Math.Min(i, 70_000));
                int length = Math.Min(random.Next(3, 300), size - i);
                for (int k = 0; k < length; k++, i++)
                {
                    text[i] = text[i - distance];
                }
                i--;
            }
            else
            {
                text[i] = (byte)('a' + random.Next(6));
            }
        }
        yield return text;
    }
}
