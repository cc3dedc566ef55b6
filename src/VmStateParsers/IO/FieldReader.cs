using System.Buffers.Binary;
using System.Text;

namespace CloudMem.VmStateParsers.IO;

/// <summary>
/// Bounded field reads over a header span: running past the end becomes a <see cref="FormatError"/> naming the
/// field and its file offset, never an <see cref="IndexOutOfRangeException"/>.
/// </summary>
internal readonly ref struct FieldReader
{
    private readonly ReadOnlySpan<byte> _data;

    public FieldReader(ReadOnlySpan<byte> data, long fileOffset, string format, string structure, bool bigEndian = false)
    {
        _data = data;
        FileOffset = fileOffset;
        Format = format;
        Structure = structure;
        BigEndian = bigEndian;
    }

    public long FileOffset { get; }
    public string Format { get; }
    public string Structure { get; }
    public bool BigEndian { get; }
    public int Length => _data.Length;

    public ReadOnlySpan<byte> Bytes(int offset, int length, string field)
    {
        if (offset < 0 || length < 0 || offset > _data.Length - length)
        {
            throw Fail(field, offset, $"needs {length} bytes but the {Structure} has only {Math.Max(0, _data.Length - offset)} here (file truncated?)");
        }
        return _data.Slice(offset, length);
    }

    public byte U8(int offset, string field) => Bytes(offset, 1, field)[0];

    public ushort U16(int offset, string field)
    {
        ReadOnlySpan<byte> b = Bytes(offset, 2, field);
        return BigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b);
    }

    public uint U32(int offset, string field)
    {
        ReadOnlySpan<byte> b = Bytes(offset, 4, field);
        return BigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b);
    }

    public int I32(int offset, string field) => unchecked((int)U32(offset, field));

    public ulong U64(int offset, string field)
    {
        ReadOnlySpan<byte> b = Bytes(offset, 8, field);
        return BigEndian ? BinaryPrimitives.ReadUInt64BigEndian(b) : BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public long I64(int offset, string field) => unchecked((long)U64(offset, field));

    /// <summary>A NUL-terminated ASCII string in a fixed-size field.</summary>
    public string FixedString(int offset, int length, string field)
    {
        ReadOnlySpan<byte> b = Bytes(offset, length, field);
        int nul = b.IndexOf((byte)0);
        if (nul >= 0)
        {
            b = b[..nul];
        }
        return Encoding.ASCII.GetString(b);
    }

    public FormatErrorException Fail(string field, int offset, string problem)
        => new(new FormatError(Format, $"{Structure}.{field}", FileOffset + offset, problem));
}

/// <summary>Shorthand for raising a structured format error inside a parser.</summary>
internal static class Fail
{
    public static FormatErrorException At(string format, string structure, long fileOffset, string problem)
        => new(new FormatError(format, structure, fileOffset, problem));
}
