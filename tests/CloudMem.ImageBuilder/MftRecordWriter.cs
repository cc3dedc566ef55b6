using System.Buffers.Binary;
using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// An NTFS file for the MFT part of a scenario: record number, name and parent, $FILE_NAME times (all four =
/// <see cref="Created"/> + 0/1/2/3 minutes) and $STANDARD_INFORMATION times (<see cref="SiCreated"/> likewise), data
/// resident (<see cref="Content"/>) or not (<see cref="NonResidentSize"/>).
/// </summary>
public sealed record ScenarioMftRecord(uint Record, string Name, ulong Parent, DateTime Created, DateTime SiCreated)
{
    public byte[]? Content { get; init; }
    public long? NonResidentSize { get; init; }
    public bool Directory { get; init; }

    /// <summary>The record's in-use flag is clear (a deleted file).</summary>
    public bool Deleted { get; init; }

    /// <summary>The second sector's last two bytes are overwritten after the fixups (a torn write).</summary>
    public bool Torn { get; init; }

    public ushort Sequence { get; init; } = 1;
}

/// <summary>A FILE record laid out: where, and which scenario record.</summary>
public sealed record LaidOutMftRecord(ulong Physical, ScenarioMftRecord Record);

/// <summary>
/// Writes 1024-byte NTFS FILE records as NTFS does: header (update sequence array at 0x30 with 3 entries, first attribute
/// at 0x38, record number at 0x2C), $STANDARD_INFORMATION, $FILE_NAME (Win32 name space), an unnamed $DATA (resident,
/// or non-resident with a one-extent run list), the end marker, then the fixups: the last two bytes of each 512-byte
/// sector are saved in the array and replaced by the update sequence number.
/// </summary>
public static class MftRecordWriter
{
    public const int RecordSize = 1024;
    private const ushort Usn = 0x0007;

    public static byte[] Write(ScenarioMftRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        byte[] b = new byte[RecordSize];
        Span<byte> s = b;
        BinaryPrimitives.WriteUInt32LittleEndian(s, 0x454C4946);                  // "FILE"
        BinaryPrimitives.WriteUInt16LittleEndian(s[4..], 0x30);                   // update sequence array offset
        BinaryPrimitives.WriteUInt16LittleEndian(s[6..], 3);                      // USN + one entry per sector
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], 0x2A3B4C5DUL + r.Record); // $LogFile sequence number
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x10..], r.Sequence);
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x12..], 1);                   // hard links
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x14..], 0x38);                // first attribute
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x16..], (ushort)((r.Deleted ? 0 : 1) | (r.Directory ? 2 : 0)));
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x1C..], RecordSize);
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x2C..], r.Record);
        int at = 0x38;
        ushort id = 0;
        byte[] si = new byte[0x48];
        PutTimes(si, r.SiCreated);
        BinaryPrimitives.WriteUInt32LittleEndian(si.AsSpan(0x20), r.Directory ? 0x10u : 0x20u);    // FILE_ATTRIBUTE_DIRECTORY / ARCHIVE
        at = Resident(s, at, 0x10, si, id++);
        byte[] name = Encoding.Unicode.GetBytes(r.Name);
        byte[] fn = new byte[0x42 + name.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(fn, r.Parent | (1UL << 48));
        PutTimes(fn.AsSpan(8), r.Created);
        long size = r.Content?.Length ?? r.NonResidentSize ?? 0;
        BinaryPrimitives.WriteInt64LittleEndian(fn.AsSpan(0x28), (size + 4095) & ~4095L);
        BinaryPrimitives.WriteInt64LittleEndian(fn.AsSpan(0x30), size);
        name.CopyTo(fn, 0x42);
        fn[0x40] = (byte)r.Name.Length;
        fn[0x41] = 1;                                                          // Win32 name space
        at = Resident(s, at, 0x30, fn, id++);
        if (r.Content is not null)
        {
            at = Resident(s, at, 0x80, r.Content, id++);
        }
        else if (r.NonResidentSize is long length)
        {
            long clusters = (length + 4095) / 4096;
            // Non-resident header (0x40 bytes) + a run list of one extent (length, LCN 0x1234) + terminator, padded to 8.
            byte[] runs = [0x21 | 0x10, (byte)clusters, 0x34, 0x12, 0x00, 0, 0, 0];
            int attrLength = 0x40 + runs.Length;
            BinaryPrimitives.WriteUInt32LittleEndian(s[at..], 0x80);
            BinaryPrimitives.WriteUInt32LittleEndian(s[(at + 4)..], (uint)attrLength);
            s[at + 8] = 1;
            BinaryPrimitives.WriteUInt16LittleEndian(s[(at + 0xE)..], id++);
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 0x18)..], clusters - 1);           // last VCN
            BinaryPrimitives.WriteUInt16LittleEndian(s[(at + 0x20)..], 0x40);                  // run list offset
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 0x28)..], clusters * 4096);        // allocated
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 0x30)..], length);                 // real
            BinaryPrimitives.WriteInt64LittleEndian(s[(at + 0x38)..], length);                 // initialised
            runs.CopyTo(s[(at + 0x40)..]);
            at += attrLength;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(s[at..], 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(s[0x18..], (uint)(at + 8));                   // used size
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x28..], id);                               // next attribute id
        BinaryPrimitives.WriteUInt16LittleEndian(s[0x30..], Usn);
        for (int sector = 0; sector < RecordSize / 512; sector++)
        {
            int end = (sector + 1) * 512 - 2;
            s.Slice(end, 2).CopyTo(s[(0x32 + sector * 2)..]);
            BinaryPrimitives.WriteUInt16LittleEndian(s[end..], Usn);
        }
        if (r.Torn)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(s[(1024 - 2)..], 0xBEEF);
        }
        return b;
    }

    /// <summary>The four times of an attribute: <paramref name="t"/>, then +1, +2, +3 minutes (created, modified, MFT changed, accessed).</summary>
    public static DateTime[] TimesOf(DateTime t) => [t, t.AddMinutes(1), t.AddMinutes(2), t.AddMinutes(3)];

    private static void PutTimes(Span<byte> at, DateTime t)
    {
        DateTime[] times = TimesOf(t);
        for (int i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(at[(i * 8)..], times[i].ToFileTimeUtc());
        }
    }

    private static int Resident(Span<byte> s, int at, uint type, ReadOnlySpan<byte> content, ushort id)
    {
        int length = (0x18 + content.Length + 7) & ~7;
        BinaryPrimitives.WriteUInt32LittleEndian(s[at..], type);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(at + 4)..], (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(s[(at + 0xE)..], id);
        BinaryPrimitives.WriteUInt32LittleEndian(s[(at + 0x10)..], (uint)content.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(s[(at + 0x14)..], 0x18);
        content.CopyTo(s[(at + 0x18)..]);
        return at + length;
    }
}
