using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Engine.Windows.Files;

/// <summary>A $FILE_NAME name space (which naming rules the name follows).</summary>
public enum MftNamespace
{
    /// <summary>POSIX: case sensitive, any character but NUL and '/'.</summary>
    Posix = 0,
    /// <summary>Win32 long name.</summary>
    Win32 = 1,
    /// <summary>DOS 8.3 short name.</summary>
    Dos = 2,
    /// <summary>A name valid in both the Win32 and DOS name spaces.</summary>
    Win32AndDos = 3,
}

/// <summary>The four NTFS time stamps of a $STANDARD_INFORMATION or $FILE_NAME attribute (null: zero or out of range).</summary>
public sealed record NtfsTimes(DateTimeOffset? Created, DateTimeOffset? Modified, DateTimeOffset? MftModified, DateTimeOffset? Accessed);

/// <summary>A $FILE_NAME attribute.</summary>
public sealed record NtfsFileName(ulong ParentRecord, ushort ParentSequence, string Name, MftNamespace Namespace, NtfsTimes Times);

/// <summary>
/// An NTFS FILE record (the MFT entry), parsed from its bytes: header ("FILE", update sequence array, sequence, link
/// count, flags, first attribute, used and allocated sizes, record number), the fixups applied (the last two bytes of
/// every 512-byte sector must equal the update sequence number and are replaced by the array's entries; a sector that
/// does not is torn and named in <see cref="FixupError"/>) and the attributes $STANDARD_INFORMATION (0x10), $FILE_NAME
/// (0x30) and the unnamed $DATA (0x80).
/// </summary>
public sealed record MftRecord(uint Record, ushort Sequence, ushort LinkCount, bool InUse, bool Directory, NtfsTimes? Standard,
    IReadOnlyList<NtfsFileName> Names, long? DataSize, bool? DataResident, byte[]? ResidentData, string? FixupError, string? AttributeError)
{
    /// <summary>"FILE" (little-endian u32).</summary>
    public const uint Signature = 0x454C4946;

    /// <summary>Bytes per sector the update sequence protects.</summary>
    public const int SectorSize = 512;

    private const int MaxAttributes = 64;

    /// <summary>Parses a FILE record of <paramref name="raw"/>.Length bytes (a multiple of 512); null when the header is impossible.</summary>
    public static MftRecord? Parse(ReadOnlySpan<byte> raw)
    {
        if (raw.Length < SectorSize || raw.Length % SectorSize != 0 || BinaryPrimitives.ReadUInt32LittleEndian(raw) != Signature)
        {
            return null;
        }
        int usaOffset = BinaryPrimitives.ReadUInt16LittleEndian(raw[4..]), usaCount = BinaryPrimitives.ReadUInt16LittleEndian(raw[6..]);
        int firstAttribute = BinaryPrimitives.ReadUInt16LittleEndian(raw[0x14..]);
        uint used = BinaryPrimitives.ReadUInt32LittleEndian(raw[0x18..]), allocated = BinaryPrimitives.ReadUInt32LittleEndian(raw[0x1C..]);
        int sectors = raw.Length / SectorSize;
        if (usaCount != sectors + 1 || usaOffset < 0x28 || usaOffset % 2 != 0 || usaOffset + usaCount * 2 > firstAttribute
            || firstAttribute >= raw.Length || allocated != raw.Length || used > allocated || used < firstAttribute)
        {
            return null;
        }
        byte[] record = raw.ToArray();
        ushort usn = BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(usaOffset));
        string? fixupError = null;
        for (int sector = 0; sector < sectors; sector++)
        {
            int end = (sector + 1) * SectorSize - 2;
            ushort stored = BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(end));
            if (stored != usn)
            {
                fixupError ??= $"sector {sector} ends with 0x{stored:X4}, not the update sequence number 0x{usn:X4} (torn or partly overwritten)";
                continue;
            }
            record.AsSpan(usaOffset + 2 + sector * 2, 2).CopyTo(record.AsSpan(end));
        }
        ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(0x16));
        var names = new List<NtfsFileName>();
        NtfsTimes? standard = null;
        long? dataSize = null;
        bool? resident = null;
        byte[]? data = null;
        string? attributeError = null;
        int at = firstAttribute;
        for (int n = 0; n < MaxAttributes; n++)
        {
            if (at + 8 > used)
            {
                attributeError = $"attribute at 0x{at:X} runs past the used size 0x{used:X} before the end marker";
                break;
            }
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(at));
            if (type == 0xFFFFFFFF)
            {
                break;
            }
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(at + 4));
            if (length < 0x18 || length % 8 != 0 || at + (long)length > used)
            {
                attributeError = $"attribute 0x{type:X} at 0x{at:X} has length 0x{length:X} (outside the record)";
                break;
            }
            ReadOnlySpan<byte> a = record.AsSpan(at, (int)length);
            bool nonResident = a[8] != 0;
            int nameLength = a[9];
            if (!nonResident)
            {
                uint contentLength = BinaryPrimitives.ReadUInt32LittleEndian(a[0x10..]);
                int contentOffset = BinaryPrimitives.ReadUInt16LittleEndian(a[0x14..]);
                if (contentOffset + (long)contentLength > length)
                {
                    attributeError = $"resident attribute 0x{type:X} at 0x{at:X}: content 0x{contentOffset:X}+0x{contentLength:X} outside its 0x{length:X} bytes";
                    break;
                }
                ReadOnlySpan<byte> content = a.Slice(contentOffset, (int)contentLength);
                switch (type)
                {
                    case 0x10 when content.Length >= 0x20:
                        standard = Times(content);
                        break;
                    case 0x30 when content.Length >= 0x42 && content.Length >= 0x42 + content[0x40] * 2:
                        ulong parent = BinaryPrimitives.ReadUInt64LittleEndian(content);
                        names.Add(new NtfsFileName(parent & 0xFFFFFFFFFFFF, (ushort)(parent >> 48), Encoding.Unicode.GetString(content.Slice(0x42, content[0x40] * 2)),
                            (MftNamespace)(content[0x41] & 3), Times(content[8..])));
                        break;
                    case 0x80 when nameLength == 0:
                        (dataSize, resident, data) = (contentLength, true, content.ToArray());
                        break;
                }
            }
            else if (type == 0x80 && nameLength == 0 && length >= 0x40 && BinaryPrimitives.ReadUInt64LittleEndian(a[0x10..]) == 0)
            {
                (dataSize, resident) = ((long)BinaryPrimitives.ReadUInt64LittleEndian(a[0x30..]), false);     // the first extent holds the real size
            }
            at += (int)length;
        }
        return new MftRecord(BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(0x2C)), BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(0x10)),
            BinaryPrimitives.ReadUInt16LittleEndian(record.AsSpan(0x12)), (flags & 1) != 0, (flags & 2) != 0, standard, names, dataSize, resident, data,
            fixupError, attributeError);
    }

    private static NtfsTimes Times(ReadOnlySpan<byte> at)
        => new(WindowsProcesses.FileTime(BinaryPrimitives.ReadUInt64LittleEndian(at)), WindowsProcesses.FileTime(BinaryPrimitives.ReadUInt64LittleEndian(at[8..])),
            WindowsProcesses.FileTime(BinaryPrimitives.ReadUInt64LittleEndian(at[0x10..])), WindowsProcesses.FileTime(BinaryPrimitives.ReadUInt64LittleEndian(at[0x18..])));
}
