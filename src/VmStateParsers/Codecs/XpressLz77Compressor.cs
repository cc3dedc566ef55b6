using System.Buffers;
using System.Buffers.Binary;

namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// Encoder for Microsoft "plain LZ77" Xpress ([MS-XCA] section 2.3; the format <see cref="XpressLz77"/> reads):
/// 32-bit flag words (MSB first, 1 = match), literal bytes, and 16-bit match tokens of (offset - 1) &lt;&lt; 3 | min(length - 3, 7)
/// with the shared half-byte, byte, word and dword length extensions. Greedy matching with a one-entry hash table of
/// 4-byte prefixes, sparser probing inside incompressible stretches; offsets up to 8192. Meant for inputs up to a few hundred KiB (a hibernation compression set).
/// </summary>
public static class XpressLz77Compressor
{
    private const int MaxOffset = 8192;
    private const int MinMatch = 3;
    private const int HashBits = 14;

    /// <summary>Worst-case output size for <paramref name="inputLength"/> input bytes (all literals plus flag words).</summary>
    public static int MaxCompressedLength(int inputLength) => inputLength + (inputLength / 32 + 2) * 4;

    /// <summary>Compresses <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <returns>Bytes written, or -1 when <paramref name="destination"/> is too small (it never is at <see cref="MaxCompressedLength"/>).</returns>
    /// <remarks>Thread-safe (no shared state). The output decodes with <see cref="XpressLz77.Decompress"/> given the source length.</remarks>
    public static int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int[] rented = ArrayPool<int>.Shared.Rent(1 << HashBits);
        try
        {
            Span<int> table = rented.AsSpan(0, 1 << HashBits);
            table.Fill(-1);
            return Compress(source, destination, table);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(rented);
        }
    }

    private static int Compress(ReadOnlySpan<byte> source, Span<byte> destination, Span<int> table)
    {
        var w = new Writer(destination);
        int pos = 0;
        int literalStart = 0;
        int misses = 0;
        while (pos <= source.Length - 4)
        {
            uint key = BinaryPrimitives.ReadUInt32LittleEndian(source[pos..]);
            int slot = (int)((key * 2654435761u) >> (32 - HashBits));
            int candidate = table[slot];
            table[slot] = pos;
            int bestLength = 0;
            int bestOffset = 0;
            if (candidate >= 0 && pos - candidate <= MaxOffset)
            {
                bestLength = CommonLength(source, candidate, pos);
                bestOffset = pos - candidate;
            }
            if (bestLength < MinMatch && pos > 0 && source[pos] == source[pos - 1])
            {
                // Runs (zero pages) match at offset 1 even when the hash slot was overwritten.
                int run = CommonLength(source, pos - 1, pos);
                if (run >= MinMatch)
                {
                    bestLength = run;
                    bestOffset = 1;
                }
            }
            if (bestLength < MinMatch)
            {
                // Incompressible stretches are probed more sparsely the longer they last (as LZ4 does).
                pos += 1 + (++misses >> 6);
                continue;
            }
            misses = 0;
            if (!w.Literals(source[literalStart..pos]) || !w.Match(bestOffset, bestLength))
            {
                return -1;
            }
            int end = pos + bestLength;
            // Index a few positions inside the match so later data can refer back into it.
            for (int p = pos + 1; p < end && p <= source.Length - 4 && p < pos + 16; p++)
            {
                uint k = BinaryPrimitives.ReadUInt32LittleEndian(source[p..]);
                table[(int)((k * 2654435761u) >> (32 - HashBits))] = p;
            }
            pos = end;
            literalStart = pos;
        }
        return w.Literals(source[literalStart..]) ? w.Finish() : -1;
    }

    // The source is the final data, so an overlapping match (from + n >= at) compares what the decoder will have
    // copied byte by byte: comparing the source with itself is exact.
    private static int CommonLength(ReadOnlySpan<byte> source, int from, int at)
        => source[from..].CommonPrefixLength(source[at..]);

    private ref struct Writer
    {
        private readonly Span<byte> _out;
        private int _pos;
        private int _flagPos;
        private uint _flags;
        private int _flagCount;
        private int _halfBytePos;

        public Writer(Span<byte> output)
        {
            _out = output;
            _flagPos = 0;
            _pos = 4;
            _flags = 0;
            _flagCount = 0;
            _halfBytePos = -1;
            Ok = output.Length >= 4;
        }

        private bool Ok { get; set; }

        /// <summary>Literal bytes: copied in stretches up to the next flag word, each a clear flag bit.</summary>
        public bool Literals(ReadOnlySpan<byte> values)
        {
            while (!values.IsEmpty)
            {
                int count = Math.Min(values.Length, 32 - _flagCount);
                if (!Room(count))
                {
                    return false;
                }
                values[..count].CopyTo(_out[_pos..]);
                _pos += count;
                values = values[count..];
                _flags = count == 32 ? 0 : _flags << count;
                _flagCount += count;
                if (_flagCount == 32 && !FlushFlags())
                {
                    return false;
                }
            }
            return true;
        }

        public bool Match(int offset, int length)
        {
            int extra = length - MinMatch;
            if (!Room(2))
            {
                return false;
            }
            BinaryPrimitives.WriteUInt16LittleEndian(_out[_pos..], (ushort)(((offset - 1) << 3) | Math.Min(extra, 7)));
            _pos += 2;
            if (extra >= 7)
            {
                extra -= 7;
                int nibble = Math.Min(extra, 15);
                if (_halfBytePos < 0)
                {
                    if (!Room(1))
                    {
                        return false;
                    }
                    _halfBytePos = _pos;
                    _out[_pos++] = (byte)nibble;
                }
                else
                {
                    _out[_halfBytePos] |= (byte)(nibble << 4);
                    _halfBytePos = -1;
                }
                if (extra >= 15)
                {
                    extra -= 15;
                    if (!Room(1))
                    {
                        return false;
                    }
                    _out[_pos++] = (byte)Math.Min(extra, 255);
                    if (extra >= 255)
                    {
                        int total = length - MinMatch;
                        if (total <= ushort.MaxValue)
                        {
                            if (!Room(2))
                            {
                                return false;
                            }
                            BinaryPrimitives.WriteUInt16LittleEndian(_out[_pos..], (ushort)total);
                            _pos += 2;
                        }
                        else
                        {
                            if (!Room(6))
                            {
                                return false;
                            }
                            BinaryPrimitives.WriteUInt16LittleEndian(_out[_pos..], 0);
                            BinaryPrimitives.WriteUInt32LittleEndian(_out[(_pos + 2)..], (uint)total);
                            _pos += 6;
                        }
                    }
                }
            }
            return Flag(1);
        }

        public int Finish()
        {
            if (!Ok)
            {
                return -1;
            }
            // Unused flag bits are ones: a set flag with no input left ends the stream.
            int unused = 32 - _flagCount;
            uint final = unused == 32 ? uint.MaxValue : (_flags << unused) | ((1u << unused) - 1);
            BinaryPrimitives.WriteUInt32LittleEndian(_out[_flagPos..], final);
            return _pos;
        }

        private bool Flag(uint bit)
        {
            _flags = (_flags << 1) | bit;
            return ++_flagCount < 32 || FlushFlags();
        }

        private bool FlushFlags()
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_out[_flagPos..], _flags);
            if (!Room(4))
            {
                return false;
            }
            _flagPos = _pos;
            _pos += 4;
            _flags = 0;
            _flagCount = 0;
            return true;
        }

        private bool Room(int bytes)
        {
            if (!Ok || _out.Length - _pos < bytes)
            {
                Ok = false;
                return false;
            }
            return true;
        }
    }
}
