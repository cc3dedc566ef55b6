using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Engine.Symbols;

/// <summary>The GUID of a PDB (CodeView RSDS record, PDB info stream) as symbol paths spell it.</summary>
public static class PdbGuid
{
    /// <summary>
    /// Formats the 16 bytes of a GUID as stored on disk the way symbol paths write it: Data1 (u32), Data2 and Data3
    /// (u16) little-endian read and printed as numbers, then the 8 bytes of Data4 in order; 32 upper-case hex digits.
    /// </summary>
    public static string Format(ReadOnlySpan<byte> guid)
    {
        if (guid.Length != 16)
        {
            throw new ArgumentException("a GUID is 16 bytes", nameof(guid));
        }
        var text = new StringBuilder(32);
        text.Append(BinaryPrimitives.ReadUInt32LittleEndian(guid).ToString("X8"));
        text.Append(BinaryPrimitives.ReadUInt16LittleEndian(guid[4..]).ToString("X4"));
        text.Append(BinaryPrimitives.ReadUInt16LittleEndian(guid[6..]).ToString("X4"));
        foreach (byte b in guid[8..])
        {
            text.Append(b.ToString("X2"));
        }
        return text.ToString();
    }
}
