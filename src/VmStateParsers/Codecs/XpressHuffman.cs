using System.Buffers;
using System.Buffers.Binary;

namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// Decoder for Microsoft LZ77+Huffman Xpress ([MS-XCA] sections 2.1/2.2; RtlDecompressBuffer
/// COMPRESSION_FORMAT_XPRESS_HUFF = 4). Each block of up to 65536 output bytes starts with a 256-byte table
/// of 512 four-bit code lengths (canonical Huffman, at most 15 bits), followed by a bit stream read most
/// significant bit first from 16-bit little-endian words. Symbols below 256 are literals; the others are
/// matches whose low nibble is the length class and whose high nibble is the bit length of the offset.
/// </summary>
public static class XpressHuffman
{
    private const int SymbolCount = 512;
    private const int MaxCodeLength = 15;
    private const int TableSize = 1 << MaxCodeLength;
    private const int BlockOutputSize = 65536;
    private const int LengthTableBytes = 256;

    /// <summary>
    /// Decompresses <paramref name="source"/> into <paramref name="destination"/>; the destination length is the
    /// expected output size and decoding stops as soon as it is full.
    /// </summary>
    /// <returns>
    /// The number of bytes written (less than the destination length only when the stream ends with the
    /// end-of-stream symbol at the end of the input), or -1 when the input is malformed: a missing or invalid
    /// code-length table (its canonical code must be complete, neither empty, incomplete nor over-subscribed),
    /// a bit stream or length extension that runs past the end of the input, or a match reaching before the
    /// start of the output. A 16-bit extended length of 0 is read as an escape to a 32-bit length, as the
    /// spec's encoder (2.1.4.3) writes it. Matches are clipped at the end of the destination.
    /// Never throws for bad data and never reads or writes outside the two spans.
    /// </returns>
    public static int Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.IsEmpty)
        {
            return 0;
        }

        ushort[] table = ArrayPool<ushort>.Shared.Rent(TableSize);
        try
        {
            Span<byte> lengths = stackalloc byte[SymbolCount];
            int inPos = 0;
            int outPos = 0;
            while (outPos < destination.Length)
            {
                if (source.Length - inPos < LengthTableBytes + 4)
                {
                    return -1;
                }
                if (!BuildTable(source.Slice(inPos, LengthTableBytes), lengths, table))
                {
                    return -1;
                }

                var bits = new BitReader(source, inPos + LengthTableBytes);
                int blockEnd = outPos + BlockOutputSize;
                while (outPos < blockEnd && outPos < destination.Length)
                {
                    int symbol = table[bits.Peek(MaxCodeLength)];
                    if (!bits.Consume(lengths[symbol]))
                    {
                        return -1;
                    }

                    if (symbol < 256)
                    {
                        destination[outPos++] = (byte)symbol;
                        continue;
                    }

                    if (symbol == 256 && bits.Position >= source.Length)
                    {
                        // The spec's end-of-stream marker: symbol 256 once all input is consumed.
                        return outPos;
                    }

                    int matchSymbol = symbol - 256;
                    long length = matchSymbol & 15;
                    int offsetBits = matchSymbol >> 4;
                    if (length == 15)
                    {
                        if (!bits.TryReadByte(out byte b))
                        {
                            return -1;
                        }
                        length = b;
                        if (length == 255)
                        {
                            if (!bits.TryReadUInt16(out ushort w))
                            {
                                return -1;
                            }
                            length = w;
                            if (length == 0)
                            {
                                // Later [MS-XCA] revisions escape once more to a 32-bit length.
                                if (!bits.TryReadUInt32(out uint d))
                                {
                                    return -1;
                                }
                                length = d;
                            }
                            if (length < 15)
                            {
                                return -1;
                            }
                            length -= 15;
                        }
                        length += 15;
                    }
                    length += 3;

                    int offset = (1 << offsetBits) | (offsetBits == 0 ? 0 : (int)bits.Peek(offsetBits));
                    if (!bits.Consume(offsetBits))
                    {
                        return -1;
                    }
                    if (offset > outPos)
                    {
                        return -1;
                    }

                    int count = (int)Math.Min(length, destination.Length - outPos);
                    int from = outPos - offset;
                    for (int i = 0; i < count; i++)
                    {
                        destination[outPos++] = destination[from++];
                    }
                }

                inPos = bits.Position;
            }
            return outPos;
        }
        finally
        {
            ArrayPool<ushort>.Shared.Return(table);
        }
    }

    /// <summary>
    /// Unpacks the 4-bit code lengths and fills a 2^15-entry lookup table indexed by the next 15 stream bits.
    /// Codes are assigned canonically (ordered by length, then symbol), which makes every code of length L a
    /// contiguous run of 2^(15-L) table slots. Returns false unless the code fills the table exactly (empty,
    /// incomplete and over-subscribed codes are all invalid).
    /// </summary>
    private static bool BuildTable(ReadOnlySpan<byte> packed, Span<byte> lengths, ushort[] table)
    {
        for (int i = 0; i < LengthTableBytes; i++)
        {
            lengths[2 * i] = (byte)(packed[i] & 0x0F);
            lengths[2 * i + 1] = (byte)(packed[i] >> 4);
        }

        int next = 0;
        for (int len = 1; len <= MaxCodeLength; len++)
        {
            int span = 1 << (MaxCodeLength - len);
            for (int symbol = 0; symbol < SymbolCount; symbol++)
            {
                if (lengths[symbol] != len)
                {
                    continue;
                }
                if (next + span > TableSize)
                {
                    return false;
                }
                table.AsSpan(next, span).Fill((ushort)symbol);
                next += span;
            }
        }
        // [MS-XCA] 2.2.4 requires the code to fill the table exactly: incomplete codes are invalid too.
        return next == TableSize;
    }

    /// <summary>
    /// The [MS-XCA] bit reader: a 32-bit window over the stream of 16-bit little-endian words, with the
    /// count of valid bits beyond the first 16. Words past the end of the input read as zero, but consuming
    /// any of those padding bits is reported as failure. Whole bytes for long match lengths are taken from
    /// <see cref="Position"/>, the byte position after the words already loaded.
    /// </summary>
    private ref struct BitReader
    {
        private readonly ReadOnlySpan<byte> _source;
        private uint _bits;
        private int _extra;
        private int _padWords;

        public BitReader(ReadOnlySpan<byte> source, int position)
        {
            _source = source;
            Position = position;
            _bits = (uint)LoadWord() << 16;
            _bits |= LoadWord();
            _extra = 16;
        }

        public int Position { get; private set; }

        public readonly uint Peek(int count) => _bits >> (32 - count);

        public bool Consume(int count)
        {
            if (count == 0)
            {
                return true;
            }
            _bits <<= count;
            _extra -= count;
            if (_extra < 0)
            {
                _bits |= (uint)LoadWord() << -_extra;
                _extra += 16;
            }
            // Valid bits left in the window are 16 + _extra; the padding words sit at its end.
            return 16 + _extra - 16 * _padWords >= 0;
        }

        public bool TryReadByte(out byte value)
        {
            if (_padWords > 0 || Position >= _source.Length)
            {
                value = 0;
                return false;
            }
            value = _source[Position++];
            return true;
        }

        public bool TryReadUInt16(out ushort value)
        {
            if (_padWords > 0 || _source.Length - Position < 2)
            {
                value = 0;
                return false;
            }
            value = BinaryPrimitives.ReadUInt16LittleEndian(_source.Slice(Position, 2));
            Position += 2;
            return true;
        }

        public bool TryReadUInt32(out uint value)
        {
            if (_padWords > 0 || _source.Length - Position < 4)
            {
                value = 0;
                return false;
            }
            value = BinaryPrimitives.ReadUInt32LittleEndian(_source.Slice(Position, 4));
            Position += 4;
            return true;
        }

        private ushort LoadWord()
        {
            if (_source.Length - Position >= 2)
            {
                ushort word = BinaryPrimitives.ReadUInt16LittleEndian(_source.Slice(Position, 2));
                Position += 2;
                return word;
            }
            _padWords++;
            Position = _source.Length;
            return 0;
        }
    }
}
