namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// A small greedy LZO1X compressor in the style of liblzo's / the kernel's <c>lzo1x_1_compress</c>: a 4-byte hash
/// finds one earlier candidate per position, matches of 4 or more bytes are coded as M2 (length 3..8, distance up to
/// 2048), M3 (distance up to 16384) or M4 (distance up to 49151) instructions, literal runs of 1..3 bytes ride in the
/// previous match's S bits, and the stream ends with the marker <c>11 00 00</c>. The output is a plain LZO1X stream
/// (never the lzo-rle form), which <see cref="Lzo1x.Decompress"/>, liblzo's <c>lzo1x_decompress_safe</c> (python-lzo)
/// and the kernel's <c>lzo1x_decompress_safe</c> read.
/// </summary>
/// <remarks>Used to build test images (the swsusp writer). Thread-safe: all state is per call.</remarks>
public static class Lzo1xCompressor
{
    private const int HashBits = 14;
    private const int MinMatch = 4;
    private const int M2MaxLength = 8;
    private const int M2MaxOffset = 0x0800;
    private const int M3MaxOffset = 0x4000;
    private const int M4MaxOffset = 0xBFFF;
    private const int M3MaxLength = 33;
    private const int M4MaxLength = 9;

    /// <summary>Worst-case output size for <paramref name="length"/> input bytes (lzo1x_worst_compress).</summary>
    public static int MaxOutputLength(int length) => length + (length / 16) + 64 + 3;

    /// <summary>Compresses <paramref name="source"/> into <paramref name="destination"/> (at least <see cref="MaxOutputLength"/> bytes); returns the bytes written.</summary>
    public static int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        if (destination.Length < MaxOutputLength(source.Length))
        {
            throw new ArgumentException("destination is smaller than the worst case", nameof(destination));
        }
        Span<int> table = new int[1 << HashBits];
        table.Fill(-1);
        int op = 0;
        int literalStart = 0;
        int ip = 0;
        int end = source.Length - MinMatch;
        while (ip <= end)
        {
            uint sequence = (uint)(source[ip] | source[ip + 1] << 8 | source[ip + 2] << 16 | source[ip + 3] << 24);
            int slot = (int)((sequence * 2654435761u) >> (32 - HashBits));
            int candidate = table[slot];
            table[slot] = ip;
            int distance = ip - candidate;
            if (candidate < 0 || distance > M4MaxOffset
                || source[candidate] != source[ip] || source[candidate + 1] != source[ip + 1]
                || source[candidate + 2] != source[ip + 2] || source[candidate + 3] != source[ip + 3])
            {
                // Skip faster through data that does not compress, as lzo1x_1 does.
                ip += 1 + ((ip - literalStart) >> 5);
                continue;
            }
            int length = MinMatch;
            while (ip + length < source.Length && source[candidate + length] == source[ip + length])
            {
                length++;
            }
            op = EmitLiterals(source, literalStart, ip - literalStart, destination, op);
            op = EmitMatch(destination, op, length, distance);
            ip += length;
            literalStart = ip;
        }
        op = EmitLiterals(source, literalStart, source.Length - literalStart, destination, op);
        destination[op++] = 0x11; // M4 with distance 16384: end of stream
        destination[op++] = 0;
        destination[op++] = 0;
        return op;
    }

    private static int EmitLiterals(ReadOnlySpan<byte> source, int start, int count, Span<byte> destination, int op)
    {
        if (count == 0)
        {
            return op;
        }
        if (op == 0 && count <= 238)
        {
            destination[op++] = (byte)(17 + count);
        }
        else if (count <= 3)
        {
            destination[op - 2] |= (byte)count; // the S bits of the previous match
        }
        else if (count <= 18)
        {
            destination[op++] = (byte)(count - 3);
        }
        else
        {
            destination[op++] = 0;
            op = EmitExtended(destination, op, count - 18);
        }
        source.Slice(start, count).CopyTo(destination[op..]);
        return op + count;
    }

    private static int EmitMatch(Span<byte> destination, int op, int length, int distance)
    {
        if (length <= M2MaxLength && distance <= M2MaxOffset)
        {
            int d = distance - 1;
            destination[op++] = (byte)(((length - 1) << 5) | ((d & 7) << 2));
            destination[op++] = (byte)(d >> 3);
            return op;
        }
        int offset;
        if (distance <= M3MaxOffset)
        {
            offset = distance - 1;
            if (length <= M3MaxLength)
            {
                destination[op++] = (byte)(32 | (length - 2));
            }
            else
            {
                destination[op++] = 32;
                op = EmitExtended(destination, op, length - M3MaxLength);
            }
        }
        else
        {
            offset = distance - 0x4000;
            int high = (offset >> 11) & 8;
            if (length <= M4MaxLength)
            {
                destination[op++] = (byte)(16 | high | (length - 2));
            }
            else
            {
                destination[op++] = (byte)(16 | high);
                op = EmitExtended(destination, op, length - M4MaxLength);
            }
        }
        destination[op++] = (byte)(offset << 2);
        destination[op++] = (byte)(offset >> 6);
        return op;
    }

    /// <summary>The tail of an extended length: a zero byte per 255, then the rest (1..255).</summary>
    private static int EmitExtended(Span<byte> destination, int op, int value)
    {
        while (value > 255)
        {
            destination[op++] = 0;
            value -= 255;
        }
        destination[op++] = (byte)value;
        return op;
    }
}
