using System.Buffers.Binary;
using System.Text;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers.Codecs;

namespace CloudMem.Tests.Codecs;

public sealed partial class XpressTests
{
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
