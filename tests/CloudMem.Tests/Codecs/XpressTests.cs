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
public sealed class XpressTests
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

    private static List<byte[]> Pages()
    {
        var pages = new List<byte[]>();
        string? dir = Fixture.Directory();
        if (dir is not null)
        {
            using var stream = File.OpenRead(Path.Combine(dir, "memory.raw"));
            // A spread of pages: low memory, kernel text area, and a few further in.
            foreach (long offset in new long[] { 0x0, 0x9F000, 0x100000, 0x1000000, 0x1200000, 0x2000000, 0x4000000, 0x8000000 })
            {
                if (offset + 4096 > stream.Length)
                {
                    continue;
                }
                var page = new byte[4096];
                stream.Position = offset;
                stream.ReadExactly(page);
                pages.Add(page);
            }
        }
        if (pages.Count == 0)
        {
            var random = new Random(99);
            string[] words = ["kernel", "page", "table", "memory", "xpress", "huffman", "offset", "\n", " ", "0x"];
            for (int p = 0; p < 4; p++)
            {
                var sb = new StringBuilder();
                while (sb.Length < 4096)
                {
                    sb.Append(words[random.Next(words.Length)]);
                }
                pages.Add(Encoding.ASCII.GetBytes(sb.ToString(0, 4096)));
            }
        }
        return pages;
    }

    /// <summary>A greedy LZ77 match finder (hash chains over 3-byte prefixes), limited by window and end.</summary>
    private static IEnumerable<(int Literal, int Length, int Offset)> Parse(byte[] data, int maxOffset, int blockSize)
    {
        const int HashBits = 15;
        var head = new int[1 << HashBits];
        Array.Fill(head, -1);
        var prev = new int[data.Length];
        static int HashAt(byte[] d, int i) => ((d[i] << 10) ^ (d[i + 1] << 5) ^ d[i + 2]) & ((1 << HashBits) - 1);

        int pos = 0;
        while (pos < data.Length)
        {
            int limit = Math.Min(data.Length, (pos / blockSize + 1) * blockSize);
            int bestLength = 0;
            int bestOffset = 0;
            if (pos + 3 <= limit)
            {
                int candidate = head[HashAt(data, pos)];
                for (int tries = 0; candidate >= 0 && tries < 32 && pos - candidate <= maxOffset; tries++)
                {
                    int length = 0;
                    while (pos + length < limit && data[candidate + length] == data[pos + length])
                    {
                        length++;
                    }
                    if (length > bestLength)
                    {
                        bestLength = length;
                        bestOffset = pos - candidate;
                    }
                    candidate = prev[candidate];
                }
            }
            int step = bestLength >= 3 ? bestLength : 1;
            for (int k = 0; k < step; k++, pos++)
            {
                if (pos + 3 <= data.Length)
                {
                    int h = HashAt(data, pos);
                    prev[pos] = head[h];
                    head[h] = pos;
                }
            }
            yield return step == 1 ? (data[pos - 1], 0, 0) : (-1, bestLength, bestOffset);
        }
    }

    /// <summary>Test-only plain LZ77 compressor following [MS-XCA] 2.3.</summary>
    private static byte[] PlainCompress(byte[] data)
    {
        var output = new List<byte>();
        int flagPos = -1;
        uint flags = 0;
        int flagCount = 0;
        int halfBytePos = -1;

        void AddFlag(uint bit)
        {
            if (flagPos < 0)
            {
                flagPos = output.Count;
                output.AddRange(new byte[4]);
            }
            flags = (flags << 1) | bit;
            flagCount++;
            if (flagCount == 32)
            {
                WriteFlags();
                flagPos = -1;
                flags = 0;
                flagCount = 0;
            }
        }

        void WriteFlags()
        {
            Span<byte> tmp = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(tmp, flags);
            for (int i = 0; i < 4; i++)
            {
                output[flagPos + i] = tmp[i];
            }
        }

        foreach (var (literal, length, offset) in Parse(data, 8192, int.MaxValue))
        {
            if (literal >= 0)
            {
                AddFlag(0);
                output.Add((byte)literal);
                continue;
            }
            AddFlag(1);
            int rest = length - 3;
            int token = ((offset - 1) << 3) | Math.Min(rest, 7);
            output.Add((byte)token);
            output.Add((byte)(token >> 8));
            if (rest < 7)
            {
                continue;
            }
            rest -= 7;
            int nibble = Math.Min(rest, 15);
            if (halfBytePos < 0)
            {
                halfBytePos = output.Count;
                output.Add((byte)nibble);
            }
            else
            {
                output[halfBytePos] |= (byte)(nibble << 4);
                halfBytePos = -1;
            }
            if (rest < 15)
            {
                continue;
            }
            rest -= 15;
            if (rest < 255)
            {
                output.Add((byte)rest);
                continue;
            }
            output.Add(255);
            int total = length - 3;
            if (total <= 0xFFFF)
            {
                output.Add((byte)total);
                output.Add((byte)(total >> 8));
            }
            else
            {
                output.Add(0);
                output.Add(0);
                output.Add((byte)total);
                output.Add((byte)(total >> 8));
                output.Add((byte)(total >> 16));
                output.Add((byte)(total >> 24));
            }
        }

        if (flagCount > 0)
        {
            // Pad the last flag word with set bits, as the spec's compressor does.
            int free = 32 - flagCount;
            flags = (flags << free) | ((1u << free) - 1);
            WriteFlags();
        }
        return output.ToArray();
    }

    /// <summary>
    /// Test-only LZ77+Huffman compressor following the layout of [MS-XCA] 2.1: each 64 KiB output block gets
    /// a table giving all 512 symbols a 9-bit code (so a symbol's code is its own value), then the bit
    /// stream written through two reserved 16-bit slots so whole bytes land where the decoder looks for them.
    /// </summary>
    private static byte[] HuffmanEncode(byte[] data)
    {
        var output = new List<byte>();
        var parsed = Parse(data, 65535, 65536).ToList();
        int index = 0;
        int produced = 0;
        do
        {
            for (int i = 0; i < 256; i++)
            {
                output.Add(0x99);
            }
            var writer = new SlotBitWriter(output);
            int blockEnd = produced + 65536;
            while (index < parsed.Count && produced < blockEnd)
            {
                var (literal, length, offset) = parsed[index++];
                if (literal >= 0)
                {
                    writer.Write(9, (uint)literal);
                    produced++;
                    continue;
                }
                int offsetBits = 31 - System.Numerics.BitOperations.LeadingZeroCount((uint)offset);
                int rest = length - 3;
                writer.Write(9, (uint)(256 + (offsetBits << 4) + Math.Min(rest, 15)));
                if (rest >= 15)
                {
                    if (rest - 15 < 255)
                    {
                        writer.AddByte((byte)(rest - 15));
                    }
                    else
                    {
                        writer.AddByte(255);
                        if (rest <= 0xFFFF)
                        {
                            writer.AddByte((byte)rest);
                            writer.AddByte((byte)(rest >> 8));
                        }
                        else
                        {
                            writer.AddByte(0);
                            writer.AddByte(0);
                            writer.AddByte((byte)rest);
                            writer.AddByte((byte)(rest >> 8));
                            writer.AddByte((byte)(rest >> 16));
                            writer.AddByte((byte)(rest >> 24));
                        }
                    }
                }
                writer.Write(offsetBits, (uint)(offset - (1 << offsetBits)));
                produced += length;
            }
            if (index == parsed.Count)
            {
                writer.Write(9, 256); // end of stream
            }
            writer.Finish();
        }
        while (index < parsed.Count);
        return output.ToArray();
    }

    private sealed class SlotBitWriter
    {
        private readonly List<byte> _output;
        private int _slot1;
        private int _slot2;
        private uint _accumulator;
        private int _freeBits = 16;

        public SlotBitWriter(List<byte> output)
        {
            _output = output;
            _slot1 = output.Count;
            _slot2 = output.Count + 2;
            output.AddRange(new byte[4]);
        }

        public void AddByte(byte value) => _output.Add(value);

        public void Write(int count, uint value)
        {
            for (int i = count - 1; i >= 0; i--)
            {
                if (_freeBits == 0)
                {
                    Flush(_slot1, _accumulator);
                    _slot1 = _slot2;
                    _slot2 = _output.Count;
                    _output.AddRange(new byte[2]);
                    _accumulator = 0;
                    _freeBits = 16;
                }
                _accumulator = (_accumulator << 1) | ((value >> i) & 1);
                _freeBits--;
            }
        }

        public void Finish()
        {
            Flush(_slot1, _accumulator << _freeBits);
            Flush(_slot2, 0);
        }

        private void Flush(int at, uint word)
        {
            _output[at] = (byte)word;
            _output[at + 1] = (byte)(word >> 8);
        }
    }
}
