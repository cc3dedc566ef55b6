using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// Safe decoder for raw LZO1X streams (no container header), as produced by liblzo2's
/// <c>lzo1x_1_compress</c> / <c>lzo1x_999_compress</c>, python-lzo with <c>header=False</c>, makedumpfile
/// (<c>DUMP_DH_COMPRESSED_LZO</c> pages) and the Linux kernel's <c>lzo</c> / <c>lzo-rle</c> compressors.
/// </summary>
/// <remarks>
/// <para>
/// Stream layout (see the kernel's <c>Documentation/staging/lzo.rst</c>): a stream is a sequence of
/// instructions. Every instruction is either a literal run (bytes copied verbatim from the input) or a match
/// (bytes copied from earlier output at some distance). Each match instruction carries two "S" bits that give
/// the number (0..3) of literals copied right after the match; that count is kept as the decoder
/// <em>state</em> and decides how the next opcode below 16 is read:
/// </para>
/// <list type="table">
///   <item><term><c>0000LLLL</c>, state 0</term><description>literal run of L+3 bytes (L = 0: extended length).</description></item>
///   <item><term><c>0000DDSS H</c>, state 1..3</term><description>2-byte match, distance (H&lt;&lt;2)+D+1.</description></item>
///   <item><term><c>0000DDSS H</c>, after a literal run of 4+</term><description>3-byte match, distance (H&lt;&lt;2)+D+2049.</description></item>
///   <item><term><c>0001HLLL</c> + LE16</term><description>match of L+2 bytes, distance 16384+(H&lt;&lt;14)+(LE16&gt;&gt;2); distance 16384 marks the end of the stream.</description></item>
///   <item><term><c>001LLLLL</c> + LE16</term><description>match of L+2 bytes, distance (LE16&gt;&gt;2)+1.</description></item>
///   <item><term><c>LLLDDDSS H</c> (opcode &gt;= 64)</term><description>match of (opcode&gt;&gt;5)+1 bytes, distance (H&lt;&lt;3)+D+1.</description></item>
/// </list>
/// <para>
/// An "extended" length field of zero is followed by zero bytes that each add 255 and one non-zero byte that is
/// added to the field's maximum value. For the 16-bit operands, S is the low two bits of LE16. The very first
/// opcode is special: a value of 18..255 is a literal run of (value-17) bytes. If the stream is at least five
/// bytes long and starts with 17, the second byte is a bitstream version (kernel lzo-rle, Linux 5.1+); with a
/// non-zero version, a <c>00011LLL</c> opcode whose 14 distance bits are all ones encodes a run of
/// ((X&lt;&lt;3)|L)+4 zero bytes, X being one extra byte following the two operand bytes.
/// </para>
/// <para>
/// The decoder never reads or writes outside the given spans and reports every malformed input as -1 instead of
/// throwing. On success nothing past the returned count is written; after a failure the destination holds
/// whatever was decoded up to the error. Input that follows the end marker is ignored (liblzo reports it as
/// LZO_E_INPUT_NOT_CONSUMED after decoding the same bytes). Caveat inherited from the kernel: a stream of five
/// or more bytes whose first byte is 17 is read as the versioned form, so the empty stream <c>11 00 00</c> must
/// not be followed by padding.
/// </para>
/// </remarks>
public static class Lzo1x
{
    /// <summary>Smallest valid stream: the three-byte end marker <c>11 00 00</c>.</summary>
    private const int MinStreamLength = 3;

    /// <summary>Shortest run encoded by an lzo-rle zero-run instruction.</summary>
    private const int MinZeroRun = 4;

    /// <summary>Largest length accepted from an extended length field (prevents integer overflow).</summary>
    private const int MaxExtendedLength = int.MaxValue / 2;

    /// <summary>
    /// Decompresses one LZO1X stream (as written by lzo1x_1_compress / lzo1x_999) from <paramref name="source"/>
    /// into <paramref name="destination"/>.
    /// </summary>
    /// <param name="source">The compressed stream, starting at its first opcode (no length header).</param>
    /// <param name="destination">Receives the decompressed bytes; must be large enough for all of them.</param>
    /// <returns>
    /// The number of bytes written, or -1 for malformed input (input overrun, output overrun, look-behind before
    /// the start of the output, missing end marker). Never throws for bad data.
    /// </returns>
    public static int Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int srcLen = source.Length;
        int dstLen = destination.Length;
        if (srcLen < MinStreamLength)
        {
            return -1;
        }

        int ip = 0;
        int op = 0;
        bool zeroRuns = false;
        if (srcLen >= 5 && source[0] == 17)
        {
            // Kernel lzo-rle header: 17, version. Version 0 is plain LZO1X; any other enables zero runs.
            zeroRuns = source[1] != 0;
            ip = 2;
        }

        // state: literals copied by the previous instruction; 0, 1..3, or 4 meaning "four or more".
        int state = 0;
        int first = source[ip];
        if (first > 17)
        {
            ip++;
            int n = first - 17;
            if (n > srcLen - ip || n > dstLen)
            {
                return -1;
            }

            CopyLiterals(source, ip, destination, 0, n);
            ip += n;
            op = n;
            state = n < 4 ? n : 4;
        }

        while (true)
        {
            if ((uint)ip >= (uint)source.Length)
            {
                return -1;
            }

            int t = source[ip++];
            int len;
            int dist;

            if (t >= 64)
            {
                // LLLDDDSS HHHHHHHH: 3..8 bytes, distance 1..2048.
                if ((uint)ip >= (uint)source.Length)
                {
                    return -1;
                }

                dist = ((t >> 2) & 7) + (source[ip++] << 3) + 1;
                len = (t >> 5) + 1;
            }
            else if (t >= 32)
            {
                // 001LLLLL [ext] DDDDDDSS DDDDDDDD: distance 1..16384.
                len = t & 31;
                if (len == 0)
                {
                    len = ReadExtendedLength(source, ref ip, 31);
                    if (len < 0)
                    {
                        return -1;
                    }
                }

                len += 2;
                if (ip > srcLen - 2)
                {
                    return -1;
                }

                t = BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(ip, 2));
                ip += 2;
                dist = (t >> 2) + 1;
            }
            else if (t >= 16)
            {
                // 0001HLLL [ext] DDDDDDSS DDDDDDDD: distance 16385..49151, or end of stream.
                if (zeroRuns && (t & 0xF8) == 0x18 && ip <= srcLen - 3
                    && source[ip + 1] == 0xFF && (source[ip] & 0xFC) == 0xFC)
                {
                    // lzo-rle zero run: distance bits all ones, one extra length byte X.
                    len = ((source[ip + 2] << 3) | (t & 7)) + MinZeroRun;
                    t = source[ip];
                    ip += 3;
                    if (len > dstLen - op)
                    {
                        return -1;
                    }

                    destination.Slice(op, len).Clear();
                    op += len;
                    goto TrailingLiterals;
                }

                int high = (t & 8) << 11;
                len = t & 7;
                if (len == 0)
                {
                    len = ReadExtendedLength(source, ref ip, 7);
                    if (len < 0)
                    {
                        return -1;
                    }
                }

                len += 2;
                if (ip > srcLen - 2)
                {
                    return -1;
                }

                t = BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(ip, 2));
                ip += 2;
                dist = high + (t >> 2);
                if (dist == 0)
                {
                    // End marker: distance 16384. Compressors write 0x11 0x00 0x00 (length 3); like liblzo, the
                    // length and S bits of the marker are not checked.
                    return op;
                }

                dist += 16384;
            }
            else if (state == 0)
            {
                // 0000LLLL [ext]: literal run of 3 or more bytes.
                len = t;
                if (len == 0)
                {
                    len = ReadExtendedLength(source, ref ip, 15);
                    if (len < 0)
                    {
                        return -1;
                    }
                }

                len += 3;
                if (len > srcLen - ip || len > dstLen - op)
                {
                    return -1;
                }

                CopyLiterals(source, ip, destination, op, len);
                ip += len;
                op += len;
                state = 4;
                continue;
            }
            else
            {
                // 0000DDSS HHHHHHHH: short match; its meaning depends on the previous literal count.
                if ((uint)ip >= (uint)source.Length)
                {
                    return -1;
                }

                dist = (t >> 2) + (source[ip++] << 2) + 1;
                if (state == 4)
                {
                    dist += 2048;
                    len = 3;
                }
                else
                {
                    len = 2;
                }
            }

            int from = op - dist;
            if (from < 0 || len > dstLen - op)
            {
                return -1;
            }

            if (dist >= len)
            {
                if (len >= 8)
                {
                    destination.Slice(from, len).CopyTo(destination.Slice(op, len));
                }
                else
                {
                    for (int i = 0; i < len; i++)
                    {
                        destination[op + i] = destination[from + i];
                    }
                }
            }
            else
            {
                CopyOverlapping(destination, from, op, len);
            }

            op += len;

        TrailingLiterals:
            // The S bits of the match (low two bits of t) give 0..3 literals that follow it directly.
            state = t & 3;
            if (state != 0)
            {
                if (state > srcLen - ip || state > dstLen - op)
                {
                    return -1;
                }

                destination[op] = source[ip];
                if (state > 1)
                {
                    destination[op + 1] = source[ip + 1];
                    if (state > 2)
                    {
                        destination[op + 2] = source[ip + 2];
                    }
                }

                ip += state;
                op += state;
            }
        }
    }

    /// <summary>Copies <paramref name="count"/> bytes; bounds were checked by the caller.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyLiterals(ReadOnlySpan<byte> source, int ip, Span<byte> destination, int op, int count)
    {
        if (count >= 16)
        {
            source.Slice(ip, count).CopyTo(destination.Slice(op, count));
            return;
        }

        for (int i = 0; i < count; i++)
        {
            destination[op + i] = source[ip + i];
        }
    }

    /// <summary>
    /// Copies a match whose source overlaps its destination (distance &lt; length), which repeats the last
    /// <c>op - from</c> output bytes. Long matches copy ever larger non-overlapping chunks, since the already
    /// written output is periodic with that distance.
    /// </summary>
    private static void CopyOverlapping(Span<byte> destination, int from, int op, int len)
    {
        int dist = op - from;
        if (dist == 1)
        {
            destination.Slice(op, len).Fill(destination[from]);
            return;
        }

        if (len < 32)
        {
            for (int i = 0; i < len; i++)
            {
                destination[op + i] = destination[from + i];
            }

            return;
        }

        int end = op + len;
        while (op < end)
        {
            int chunk = Math.Min(op - from, end - op);
            destination.Slice(from, chunk).CopyTo(destination.Slice(op, chunk));
            op += chunk;
        }
    }

    /// <summary>
    /// Reads the tail of an extended length field: zero bytes worth 255 each, then one byte added to
    /// <paramref name="fieldMax"/>. Returns -1 when the input ends first or the value is absurdly large.
    /// </summary>
    private static int ReadExtendedLength(ReadOnlySpan<byte> source, ref int ip, int fieldMax)
    {
        int start = ip;
        if ((uint)start >= (uint)source.Length)
        {
            return -1;
        }

        int zeros = source.Slice(start).IndexOfAnyExcept((byte)0);
        if (zeros < 0)
        {
            return -1;
        }

        long value = (zeros * 255L) + fieldMax + source[start + zeros];
        if (value > MaxExtendedLength)
        {
            return -1;
        }

        ip = start + zeros + 1;
        return (int)value;
    }
}
