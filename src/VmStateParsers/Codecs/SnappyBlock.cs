namespace CloudMem.VmStateParsers.Codecs;

/// <summary>Helpers around raw Snappy blocks (the decoding itself is Snappier's).</summary>
internal static class SnappyBlock
{
    /// <summary>Reads the uncompressed-length preamble (a little-endian base-128 varint of at most 5 bytes).</summary>
    public static bool TryReadLength(ReadOnlySpan<byte> block, out int length)
    {
        ulong value = 0;
        for (int i = 0; i < 5 && i < block.Length; i++)
        {
            value |= (ulong)(block[i] & 0x7F) << (7 * i);
            if ((block[i] & 0x80) == 0)
            {
                length = value <= int.MaxValue ? (int)value : -1;
                return length >= 0;
            }
        }
        length = -1;
        return false;
    }

    /// <summary>Decodes a block that must produce exactly <c>destination.Length</c> bytes; never throws for bad data.</summary>
    public static bool TryDecodeExact(ReadOnlySpan<byte> block, Span<byte> destination)
    {
        if (!TryReadLength(block, out int length) || length != destination.Length)
        {
            return false;
        }
        try
        {
            return Snappier.Snappy.TryDecompress(block, destination, out int written) && written == destination.Length;
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or IndexOutOfRangeException)
        {
            return false;
        }
    }
}
