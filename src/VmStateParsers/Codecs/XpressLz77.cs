using System.Buffers.Binary;

namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// Decoder for Microsoft "plain LZ77" Xpress ([MS-XCA] sections 2.3/2.4; RtlDecompressBuffer
/// COMPRESSION_FORMAT_XPRESS = 3). The stream is a sequence of 32-bit little-endian flag words, each
/// governing the next 32 items (MSB first): a clear bit is one literal byte, a set bit is a 16-bit
/// match token (13-bit offset - 1, 3-bit length - 3) with optional shared half-byte, byte, word and
/// dword length extensions.
/// </summary>
public static class XpressLz77
{
    /// <summary>
    /// Decompresses <paramref name="source"/> into <paramref name="destination"/>, stopping when the
    /// destination is full or the input is exhausted.
    /// </summary>
    /// <returns>
    /// The number of bytes written, or -1 when the input is malformed (a match reaching before the start
    /// of the output, a truncated length extension or an invalid escaped length). Never throws for bad
    /// data and never reads or writes outside the two spans. A match that would run past the end of the
    /// destination is truncated to fit (the destination size is the caller's expected output size).
    /// </returns>
    public static int Decompress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int inPos = 0;
        int outPos = 0;
        uint flags = 0;
        int flagsLeft = 0;
        int halfBytePos = -1;

        while (outPos < destination.Length)
        {
            if (flagsLeft == 0)
            {
                if (source.Length - inPos < 4)
                {
                    // End of input at a flag boundary is a normal end; a partial flag word is not.
                    return inPos == source.Length ? outPos : -1;
                }
                flags = BinaryPrimitives.ReadUInt32LittleEndian(source.Slice(inPos, 4));
                inPos += 4;
                flagsLeft = 32;
            }

            flagsLeft--;
            if (((flags >> flagsLeft) & 1) == 0)
            {
                if (inPos >= source.Length)
                {
                    return outPos;
                }
                destination[outPos++] = source[inPos++];
                continue;
            }

            if (inPos == source.Length)
            {
                // A set flag with no input left marks the end of the stream.
                return outPos;
            }
            if (source.Length - inPos < 2)
            {
                return -1;
            }
            int token = BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(inPos, 2));
            inPos += 2;
            int offset = (token >> 3) + 1;
            long length = token & 7;
            if (length == 7)
            {
                if (halfBytePos < 0)
                {
                    if (inPos >= source.Length)
                    {
                        return -1;
                    }
                    halfBytePos = inPos;
                    length = source[inPos] & 0x0F;
                    inPos++;
                }
                else
                {
                    length = source[halfBytePos] >> 4;
                    halfBytePos = -1;
                }

                if (length == 15)
                {
                    if (inPos >= source.Length)
                    {
                        return -1;
                    }
                    length = source[inPos++];
                    if (length == 255)
                    {
                        if (source.Length - inPos < 2)
                        {
                            return -1;
                        }
                        length = BinaryPrimitives.ReadUInt16LittleEndian(source.Slice(inPos, 2));
                        inPos += 2;
                        if (length == 0)
                        {
                            if (source.Length - inPos < 4)
                            {
                                return -1;
                            }
                            length = BinaryPrimitives.ReadUInt32LittleEndian(source.Slice(inPos, 4));
                            inPos += 4;
                        }
                        if (length < 15 + 7)
                        {
                            return -1;
                        }
                        length -= 15 + 7;
                    }
                    length += 15;
                }
                length += 7;
            }
            length += 3;

            if (offset > outPos)
            {
                return -1;
            }
            int count = (int)Math.Min(length, destination.Length - outPos);
            int from = outPos - offset;
            if (offset >= count)
            {
                // No overlap: a block copy gives the same bytes as the byte-by-byte copy.
                destination.Slice(from, count).CopyTo(destination[outPos..]);
                outPos += count;
            }
            else if (offset == 1)
            {
                destination.Slice(outPos, count).Fill(destination[from]);
                outPos += count;
            }
            else
            {
                for (int i = 0; i < count; i++)
                {
                    destination[outPos++] = destination[from++];
                }
            }
        }
        return outPos;
    }
}
