using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// The Hyper-V storage container ("HyperVStorage", shared by .vmrs, .vmcx and .vsv): both file headers (the valid copy
/// with the higher sequence wins), the replay log(s), the chain of object tables, the key tables (the highest sequence
/// per index) and the key tree they describe. Every count is capped by <see cref="ParserLimits"/>; every table must lie
/// inside the file; cycles and over-deep nesting in the tree are errors. Checksum mismatches in tables and keys are
/// kept as warnings (the data is still shown), except for the file header, where no valid copy is an error.
/// </summary>
internal sealed partial class HyperVStorage
{
    public const string FormatName = "Hyper-V storage";

    private readonly IByteSource _file;
    private readonly ParserLimits _limits;
    private readonly List<HyperVKey> _keys = [];

    private HyperVStorage(IByteSource file, ParserLimits limits)
    {
        _file = file;
        _limits = limits;
    }

    public uint Version { get; private set; }
    public int HeaderCopy { get; private set; }
    public ushort Sequence { get; private set; }
    public string OtherCopy { get; private set; } = "";
    public uint Alignment { get; private set; }
    public int ReplayLogs { get; private set; }
    public long ReplayLogEntries { get; private set; }
    public int ObjectTables { get; private set; }
    public int ObjectEntries { get; private set; }
    public int FileObjects { get; private set; }
    public int KeyTables { get; private set; }
    public int SupersededKeyTables { get; private set; }
    public List<string> Warnings { get; } = [];

    /// <summary>The virtual root's children, in insertion order.</summary>
    public List<HyperVKey> Roots { get; } = [];

    /// <summary>Every key in the tree in depth-first (listing) order.</summary>
    public List<HyperVKey> Keys { get; } = [];

    /// <summary>Parses the container; throws <see cref="FormatErrorException"/> on structural problems.</summary>
    public static HyperVStorage Parse(IByteSource file, ParserLimits limits)
    {
        var storage = new HyperVStorage(file, limits);
        long replayLogOffset = storage.ReadHeaders(out ulong replayLogSize);
        storage.ReadReplayLog(replayLogOffset, replayLogSize, "header.ReplayLogOffset");
        List<(long Offset, uint Size, long DescribedAt)> keyTables = storage.ReadObjectTables();
        storage.ReadKeyTables(keyTables);
        storage.BuildTree();
        return storage;
    }

    /// <summary>Finds a direct child by name (the first of an array of same-named children).</summary>
    public static HyperVKey? Child(IEnumerable<HyperVKey>? children, string name)
    {
        if (children is null)
        {
            return null;
        }
        foreach (HyperVKey key in children)
        {
            if (key.Name == name)
            {
                return key;
            }
        }
        return null;
    }

    /// <summary>Looks a key up by path ("/a/b/c", array elements as "name[i]").</summary>
    public HyperVKey? Find(string path)
    {
        foreach (HyperVKey key in Keys)
        {
            if (key.Path == path)
            {
                return key;
            }
        }
        return null;
    }

    /// <summary>The value bytes of a key (empty for values outside the file or above 2 GiB).</summary>
    public ReadOnlySpan<byte> Value(HyperVKey key)
        => key.ValueInFile && key.ValueLength <= int.MaxValue ? _file.Span(key.ValueOffset, (int)key.ValueLength) : ReadOnlySpan<byte>.Empty;

    /// <summary>An integer value (Int, UInt or Bool), or null.</summary>
    public long? Integer(HyperVKey? key)
    {
        if (key is null)
        {
            return null;
        }
        ReadOnlySpan<byte> value = Value(key);
        return key.Type switch
        {
            HyperVKeyType.Int or HyperVKeyType.UInt when value.Length >= 8 => BinaryPrimitives.ReadInt64LittleEndian(value),
            HyperVKeyType.Bool when value.Length >= 4 => BinaryPrimitives.ReadInt32LittleEndian(value),
            _ => null,
        };
    }

    /// <summary>The value as text: full for inline values, a description for file objects; arrays in hex.</summary>
    public string Describe(HyperVKey key, int maxArrayBytes = int.MaxValue)
    {
        if (!key.ValueInFile)
        {
            return $"<{key.ValueLength} bytes at 0x{key.ValueOffset:X}: outside the file>";
        }
        if (key.InFileObject && key.Type is HyperVKeyType.Array or HyperVKeyType.String && key.ValueLength > 256)
        {
            return $"<{key.ValueLength} bytes in file object at 0x{key.ValueOffset:X}>";
        }
        ReadOnlySpan<byte> value = Value(key);
        switch (key.Type)
        {
            case HyperVKeyType.Int when value.Length >= 8:
                return BinaryPrimitives.ReadInt64LittleEndian(value).ToString(CultureInfo.InvariantCulture);
            case HyperVKeyType.UInt when value.Length >= 8:
                return BinaryPrimitives.ReadUInt64LittleEndian(value).ToString(CultureInfo.InvariantCulture);
            case HyperVKeyType.Double when value.Length >= 8:
                return BinaryPrimitives.ReadDoubleLittleEndian(value).ToString("R", CultureInfo.InvariantCulture);
            case HyperVKeyType.Bool when value.Length >= 4:
                return BinaryPrimitives.ReadInt32LittleEndian(value) != 0 ? "true" : "false";
            case HyperVKeyType.String:
                return DecodeString(value);
            case HyperVKeyType.Node:
                return "";
            default:
                int shown = (int)Math.Min(value.Length, maxArrayBytes);
                string hex = System.Convert.ToHexStringLower(value[..shown]);
                return shown < value.Length ? $"{hex}... ({value.Length} bytes)" : hex;
        }
    }

    /// <summary>Type name as shown.</summary>
    public static string TypeName(HyperVKey key)
    {
        string name = key.RawType switch
        {
            3 => "int",
            4 => "uint",
            5 => "double",
            6 => "string",
            7 => "binary",
            8 => "bool",
            9 => "node",
            _ => $"type {key.RawType}",
        };
        return key.InFileObject ? name + " (file object)" : name;
    }

    /// <summary>A UTF-16LE string without its trailing NULs.</summary>
    public static string DecodeString(ReadOnlySpan<byte> value)
    {
        string text = Encoding.Unicode.GetString(value[..(value.Length & ~1)]);
        return text.TrimEnd('\0');
    }

    private long ReadHeaders(out ulong replayLogSize)
    {
        if (_file.Length < HyperVLayout.HeaderSize)
        {
            throw Fail.At(FormatName, "header[0]", 0, $"the file has {_file.Length} bytes, a header needs {HyperVLayout.HeaderSize}");
        }
        var copies = new (bool Valid, string Problem, ushort Sequence)[2];
        for (int copy = 0; copy < 2; copy++)
        {
            long offset = copy == 0 ? HyperVLayout.HeaderCopy0 : HyperVLayout.HeaderCopy1;
            ReadOnlySpan<byte> header = _file.Span(offset, HyperVLayout.HeaderSize);
            if (header.IsEmpty)
            {
                copies[copy] = (false, "missing (file too short)", 0);
                continue;
            }
            uint signature = BinaryPrimitives.ReadUInt32LittleEndian(header);
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(header[HyperVLayout.HeaderChecksumOffset..]);
            ushort sequence = BinaryPrimitives.ReadUInt16LittleEndian(header[HyperVLayout.HeaderSequenceOffset..]);
            if (signature != HyperVLayout.HeaderSignature)
            {
                copies[copy] = (false, $"signature 0x{signature:X8} is not 0x{HyperVLayout.HeaderSignature:X8}", sequence);
            }
            else if (Crc32.ComputeWithZeroField(header, HyperVLayout.HeaderChecksumOffset) != stored)
            {
                copies[copy] = (false, $"checksum 0x{stored:X8} does not match", sequence);
            }
            else
            {
                copies[copy] = (true, "", sequence);
            }
        }
        int chosen;
        if (copies[0].Valid && copies[1].Valid)
        {
            chosen = copies[1].Sequence > copies[0].Sequence ? 1 : 0;
        }
        else if (copies[0].Valid || copies[1].Valid)
        {
            chosen = copies[0].Valid ? 0 : 1;
            int bad = 1 - chosen;
            Warnings.Add($"header copy {bad} is unusable ({copies[bad].Problem}); using copy {chosen}");
        }
        else
        {
            throw Fail.At(FormatName, "header[0]", 0, $"no valid header copy: copy 0 {copies[0].Problem}; copy 1 {copies[1].Problem}");
        }
        int other = 1 - chosen;
        HeaderCopy = chosen;
        Sequence = copies[chosen].Sequence;
        OtherCopy = copies[other].Valid ? $"sequence {copies[other].Sequence}" : copies[other].Problem;
        long at = chosen == 0 ? HyperVLayout.HeaderCopy0 : HyperVLayout.HeaderCopy1;
        var reader = new FieldReader(_file.Span(at, HyperVLayout.HeaderSize), at, FormatName, $"header[{chosen}]");
        Version = reader.U32(HyperVLayout.HeaderVersionOffset, "FormatVersion");
        if (Version is < 0x0300 or > HyperVLayout.CurrentVersion)
        {
            throw reader.Fail("FormatVersion", HyperVLayout.HeaderVersionOffset,
                $"format version 0x{Version:X} is not supported (3.0 to 4.0; older versions lay key tables out differently)");
        }
        if (Version != HyperVLayout.CurrentVersion)
        {
            Warnings.Add($"format version 0x{Version:X}: read with the 4.0 layout (only 4.0 was checked against real files)");
        }
        Alignment = reader.U32(HyperVLayout.HeaderAlignmentOffset, "DataAlignmentInBytes");
        if (Alignment is < HyperVLayout.MinAlignment or > HyperVLayout.MaxAlignment || (Alignment & (Alignment - 1)) != 0)
        {
            throw reader.Fail("DataAlignmentInBytes", HyperVLayout.HeaderAlignmentOffset, $"0x{Alignment:X} is not a power of two from 0x1000 to 0x10000");
        }
        replayLogSize = reader.U64(HyperVLayout.HeaderReplayLogSize, "ReplayLogSizeInBytes");
        return reader.I64(HyperVLayout.HeaderReplayLogOffset, "ReplayLogOffsetInBytes");
    }

    private void ReadReplayLog(long offset, ulong size, string describedBy)
    {
        if (offset == 0 && size == 0)
        {
            Warnings.Add("no replay log (offset 0)");
            return;
        }
        if (offset < HyperVLayout.RootObjectTable || offset > _file.Length - HyperVLayout.ReplayLogHeaderSize)
        {
            throw Fail.At(FormatName, describedBy, HyperVLayout.HeaderCopy0 + (HeaderCopy * HyperVLayout.HeaderCopy1),
                $"replay log offset 0x{offset:X} is outside the file (length 0x{_file.Length:X}) or inside the headers");
        }
        if (++ReplayLogs > _limits.MaxHyperVObjectTables)
        {
            throw Fail.At(FormatName, "replay log", offset, $"more than {_limits.MaxHyperVObjectTables} replay logs (ParserLimits.MaxHyperVObjectTables)");
        }
        var reader = new FieldReader(_file.Span(offset, HyperVLayout.ReplayLogHeaderSize), offset, FormatName, $"replayLog[{ReplayLogs - 1}]");
        uint signature = reader.U32(0, "Signature");
        if (signature != HyperVLayout.ReplayLogSignature)
        {
            throw reader.Fail("Signature", 0, $"0x{signature:X8} is not the replay log signature 0x{HyperVLayout.ReplayLogSignature:X8}");
        }
        uint stored = reader.U32(HyperVLayout.ReplayLogChecksumOffset, "Checksum");
        if (Crc32.ComputeWithZeroField(_file.Span(offset, HyperVLayout.ReplayLogHeaderSize), HyperVLayout.ReplayLogChecksumOffset) != stored)
        {
            Warnings.Add($"replay log at 0x{offset:X}: header checksum 0x{stored:X8} does not match");
        }
        uint entries = reader.U32(HyperVLayout.ReplayLogEntryCountOffset, "EntryCount");
        if (entries > _limits.MaxHyperVReplayLogEntries)
        {
            throw reader.Fail("EntryCount", HyperVLayout.ReplayLogEntryCountOffset, $"{entries} entries is more than {_limits.MaxHyperVReplayLogEntries} (ParserLimits.MaxHyperVReplayLogEntries)");
        }
        ReplayLogEntries += entries;
        if (entries > 0)
        {
            Warnings.Add($"replay log at 0x{offset:X} holds {entries} uncommitted entries; they were not replayed, so some values may be older than the last write");
        }
        if (size > (ulong)(_file.Length - offset))
        {
            Warnings.Add($"replay log region 0x{offset:X}+0x{size:X} reaches past the end of the file (0x{_file.Length:X}); the file may be truncated");
        }
    }

    private List<(long Offset, uint Size, long DescribedAt)> ReadObjectTables()
    {
        var keyTables = new List<(long, uint, long)>();
        var pending = new Queue<(long Offset, long DescribedAt)>();
        var seen = new HashSet<long>();
        pending.Enqueue((HyperVLayout.RootObjectTable, HyperVLayout.RootObjectTable));
        while (pending.Count > 0)
        {
            (long offset, long describedAt) = pending.Dequeue();
            string structure = $"objectTable[{ObjectTables}]";
            if (!seen.Add(offset))
            {
                throw Fail.At(FormatName, "object table entry", describedAt, $"object table at 0x{offset:X} is referenced twice (a cycle in the table chain)");
            }
            if (++ObjectTables > _limits.MaxHyperVObjectTables)
            {
                throw Fail.At(FormatName, structure, offset, $"more than {_limits.MaxHyperVObjectTables} object tables (ParserLimits.MaxHyperVObjectTables)");
            }
            if (offset < HyperVLayout.RootObjectTable || offset > _file.Length - HyperVLayout.ObjectTableHeaderSize)
            {
                throw Fail.At(FormatName, structure, describedAt, $"object table offset 0x{offset:X} is outside the file (length 0x{_file.Length:X})");
            }
            var header = new FieldReader(_file.Span(offset, HyperVLayout.ObjectTableHeaderSize), offset, FormatName, structure);
            uint signature = header.U32(0, "Signature");
            if (signature != HyperVLayout.ObjectTableSignature)
            {
                throw header.Fail("Signature", 0, $"0x{signature:X8} is not the object table signature 0x{HyperVLayout.ObjectTableSignature:X8}");
            }
            uint count = header.U32(HyperVLayout.ObjectTableCountOffset, "EntriesCount");
            if (count > (ulong)(_limits.MaxHyperVObjects - ObjectEntries))
            {
                throw header.Fail("EntriesCount", HyperVLayout.ObjectTableCountOffset, $"{count} entries bring the total past {_limits.MaxHyperVObjects} (ParserLimits.MaxHyperVObjects)");
            }
            long entriesStart = offset + HyperVLayout.ObjectTableHeaderSize;
            if ((long)count * HyperVLayout.ObjectEntrySize > _file.Length - entriesStart)
            {
                throw header.Fail("EntriesCount", HyperVLayout.ObjectTableCountOffset, $"{count} entries of {HyperVLayout.ObjectEntrySize} bytes run past the end of the file");
            }
            ObjectEntries += (int)count;
            int badChecksums = 0;
            for (int i = 0; i < count; i++)
            {
                long at = entriesStart + ((long)i * HyperVLayout.ObjectEntrySize);
                ReadOnlySpan<byte> raw = _file.Span(at, HyperVLayout.ObjectEntrySize);
                byte type = raw[HyperVLayout.ObjectTypeOffset];
                uint stored = BinaryPrimitives.ReadUInt32LittleEndian(raw[HyperVLayout.ObjectChecksumOffset..]);
                if (Crc32.ComputeWithZeroField(raw, HyperVLayout.ObjectChecksumOffset) != stored)
                {
                    badChecksums++;
                }
                long objectOffset = BinaryPrimitives.ReadInt64LittleEndian(raw[HyperVLayout.ObjectFileOffsetOffset..]);
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(raw[HyperVLayout.ObjectSizeOffset..]);
                string entry = $"{structure}.entry[{i}]";
                switch (type)
                {
                    case HyperVLayout.ObjectTable:
                        pending.Enqueue((objectOffset, at));
                        break;
                    case HyperVLayout.ObjectKeyTable:
                        if (objectOffset < HyperVLayout.RootObjectTable || objectOffset > _file.Length || size > _file.Length - objectOffset)
                        {
                            throw Fail.At(FormatName, entry, at, $"key table 0x{objectOffset:X}+0x{size:X} is outside the file (length 0x{_file.Length:X})");
                        }
                        keyTables.Add((objectOffset, size, at));
                        break;
                    case HyperVLayout.ObjectFile:
                        FileObjects++;
                        break;
                    case HyperVLayout.ObjectReplayLog:
                        ReadReplayLog(objectOffset, size, entry);
                        break;
                }
            }
            if (badChecksums > 0)
            {
                Warnings.Add($"object table at 0x{offset:X}: {badChecksums} entries fail their checksum");
            }
        }
        return keyTables;
    }

    private void ReadKeyTables(List<(long Offset, uint Size, long DescribedAt)> tables)
    {
        // Per index, the copy with the highest sequence is current.
        var current = new Dictionary<ushort, (long Offset, uint Size, ushort Sequence)>();
        foreach ((long offset, uint size, long describedAt) in tables)
        {
            string structure = $"keyTable@0x{offset:X}";
            if (size < HyperVLayout.KeyTableHeaderSize)
            {
                throw Fail.At(FormatName, structure, describedAt, $"a key table of {size} bytes cannot hold its {HyperVLayout.KeyTableHeaderSize}-byte header");
            }
            if (size > _limits.MaxHyperVKeyTableBytes)
            {
                throw Fail.At(FormatName, structure, describedAt, $"a key table of {size} bytes is larger than {_limits.MaxHyperVKeyTableBytes} (ParserLimits.MaxHyperVKeyTableBytes)");
            }
            var header = new FieldReader(_file.Span(offset, HyperVLayout.KeyTableHeaderSize), offset, FormatName, structure);
            ushort signature = header.U16(HyperVLayout.KeyTableSignatureOffset, "Signature");
            if (signature != HyperVLayout.KeyTableSignature)
            {
                throw header.Fail("Signature", 0, $"0x{signature:X4} is not the key table signature 0x{HyperVLayout.KeyTableSignature:X4}");
            }
            ushort index = header.U16(HyperVLayout.KeyTableIndexOffset, "TableIndex");
            if (index == 0)
            {
                throw header.Fail("TableIndex", HyperVLayout.KeyTableIndexOffset, "key table index 0 is reserved for the virtual root");
            }
            ushort sequence = header.U16(HyperVLayout.KeyTableSequenceOffset, "Sequence");
            uint stored = header.U32(HyperVLayout.KeyTableChecksumOffset, "Checksum");
            if (Crc32.ComputeWithZeroField(_file.Span(offset, HyperVLayout.KeyTableHeaderSize), HyperVLayout.KeyTableChecksumOffset) != stored)
            {
                Warnings.Add($"key table at 0x{offset:X}: header checksum 0x{stored:X8} does not match");
            }
            if (current.TryGetValue(index, out var existing))
            {
                SupersededKeyTables++;
                if (existing.Sequence >= sequence)
                {
                    continue;
                }
            }
            current[index] = (offset, size, sequence);
        }
        KeyTables = current.Count;
        int badChecksums = 0;
        foreach ((ushort index, (long offset, uint size, _)) in current.OrderBy(p => p.Key))
        {
            badChecksums += ReadKeyEntries(index, offset, (int)size);
        }
        if (badChecksums > 0)
        {
            Warnings.Add($"{badChecksums} key entries fail their checksum");
        }
    }

    private int ReadKeyEntries(ushort index, long tableOffset, int size)
    {
        ReadOnlySpan<byte> table = _file.Span(tableOffset, size);
        int badChecksums = 0;
        int pos = HyperVLayout.KeyTableHeaderSize;
        while (pos + HyperVLayout.KeyHeaderSize < size)
        {
            long at = tableOffset + pos;
            var entry = new FieldReader(table[pos..], at, FormatName, $"keyTable[{index}].entry@0x{pos:X}");
            byte type = entry.U8(HyperVLayout.KeyTypeOffset, "Type");
            uint entrySize = entry.U32(HyperVLayout.KeySizeOffset, "SizeInBytes");
            if (entrySize == 0)
            {
                break; // unused tail
            }
            if (entrySize < HyperVLayout.KeyHeaderSize || entrySize > (uint)(size - pos))
            {
                throw entry.Fail("SizeInBytes", HyperVLayout.KeySizeOffset, $"entry size {entrySize} is below the header size or runs past the end of the key table (0x{size - pos:X} bytes left)");
            }
            pos += (int)entrySize;
            if (type == (byte)HyperVKeyType.Free)
            {
                continue;
            }
            var body = new FieldReader(entry.Bytes(0, (int)entrySize, "entry"), at, FormatName, entry.Structure);
            byte flags = body.U8(HyperVLayout.KeyFlagsOffset, "Flags");
            int nameSize = body.U8(HyperVLayout.KeyNameSizeOffset, "NameSizeInSymbols");
            ReadOnlySpan<byte> nameBytes = body.Bytes(HyperVLayout.KeyHeaderSize, nameSize, "Name");
            int nul = nameBytes.IndexOf((byte)0);
            string name = Encoding.UTF8.GetString(nul >= 0 ? nameBytes[..nul] : nameBytes);
            int valueStart = HyperVLayout.KeyHeaderSize + nameSize;
            long valueOffset;
            long valueLength;
            int meaningful;
            bool inFileObject = (flags & HyperVLayout.KeyFlagFileObject) != 0;
            if (inFileObject)
            {
                valueLength = body.U32(valueStart + HyperVLayout.FileObjectSizeOffset, "FileObject.SizeInBytes");
                valueOffset = body.I64(valueStart + HyperVLayout.FileObjectOffsetOffset, "FileObject.OffsetInBytes");
                meaningful = HyperVLayout.FileObjectPointerSize;
            }
            else
            {
                int fixedSize = (HyperVKeyType)type switch
                {
                    HyperVKeyType.Int or HyperVKeyType.UInt or HyperVKeyType.Double => 8,
                    HyperVKeyType.Bool => 4,
                    HyperVKeyType.Node => HyperVLayout.NodeDataSize,
                    HyperVKeyType.String or HyperVKeyType.Array => -1,
                    _ => (int)entrySize - valueStart,
                };
                if (fixedSize < 0)
                {
                    uint length = body.U32(valueStart, "Value.SizeInBytes");
                    body.Bytes(valueStart + HyperVLayout.ValueSizePrefix, (int)Math.Min(length, int.MaxValue), "Value");
                    valueOffset = at + valueStart + HyperVLayout.ValueSizePrefix;
                    valueLength = length;
                    meaningful = HyperVLayout.ValueSizePrefix + (int)length;
                }
                else
                {
                    body.Bytes(valueStart, fixedSize, "Value");
                    valueOffset = at + valueStart;
                    valueLength = fixedSize;
                    meaningful = fixedSize;
                }
            }
            uint stored = body.U32(HyperVLayout.KeyChecksumOffset, "Checksum");
            if (Crc32.ComputeWithZeroField(body.Bytes(0, valueStart + meaningful, "entry"), HyperVLayout.KeyChecksumOffset) != stored)
            {
                badChecksums++;
            }
            if (_keys.Count >= _limits.MaxHyperVKeys)
            {
                throw entry.Fail("Type", 0, $"more than {_limits.MaxHyperVKeys} keys (ParserLimits.MaxHyperVKeys)");
            }
            var key = new HyperVKey
            {
                Name = name,
                RawType = type,
                Flags = flags,
                Table = index,
                OffsetInTable = (uint)(at - tableOffset),
                EntryFileOffset = at,
                InsertionSequence = body.U32(HyperVLayout.KeyInsertionOffset, "InsertionSequence"),
                ParentTable = body.U16(HyperVLayout.KeyParentTableOffset, "ParentNodeTable"),
                ParentOffset = body.U32(HyperVLayout.KeyParentOffsetOffset, "ParentNodeOffset"),
                ValueOffset = valueOffset,
                ValueLength = valueLength,
            };
            if (inFileObject && (valueOffset < 0 || valueOffset > _file.Length || valueLength > _file.Length - valueOffset))
            {
                key.ValueInFile = false;
            }
            _keys.Add(key);
        }
        return badChecksums;
    }
}
