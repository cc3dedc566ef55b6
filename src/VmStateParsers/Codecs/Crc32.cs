namespace CloudMem.VmStateParsers.Codecs;

/// <summary>
/// CRC-32 as in ISO 3309 / RFC 1952 (reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF):
/// the checksum of the Hyper-V storage container's headers, table entries and keys.
/// </summary>
public static class Crc32
{
    private static readonly uint[] s_table = BuildTable();

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Start, data));

    /// <summary>Running state before any data.</summary>
    public const uint Start = 0xFFFFFFFF;

    /// <summary>Feeds <paramref name="data"/> into a running state.</summary>
    public static uint Append(uint state, ReadOnlySpan<byte> data)
    {
        uint[] table = s_table;
        foreach (byte b in data)
        {
            state = table[(state ^ b) & 0xFF] ^ (state >> 8);
        }
        return state;
    }

    /// <summary>Feeds <paramref name="count"/> zero bytes into a running state.</summary>
    public static uint AppendZeros(uint state, int count)
    {
        uint[] table = s_table;
        for (int i = 0; i < count; i++)
        {
            state = table[state & 0xFF] ^ (state >> 8);
        }
        return state;
    }

    /// <summary>The checksum of a running state.</summary>
    public static uint Finish(uint state) => ~state;

    /// <summary>
    /// The CRC-32 of <paramref name="data"/> with the 4 bytes at <paramref name="checksumOffset"/> taken as zero
    /// (how the container checksums a structure that holds its own checksum).
    /// </summary>
    public static uint ComputeWithZeroField(ReadOnlySpan<byte> data, int checksumOffset)
    {
        uint state = Append(Start, data[..checksumOffset]);
        state = AppendZeros(state, 4);
        return Finish(Append(state, data[(checksumOffset + 4)..]));
    }

    private static uint[] BuildTable()
    {
        uint[] table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }
            table[i] = c;
        }
        return table;
    }
}
