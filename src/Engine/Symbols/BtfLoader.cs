using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers;
using static CloudMem.Engine.Symbols.BtfLayout;

namespace CloudMem.Engine.Symbols;

/// <summary>
/// Loads Linux BTF (the kernel's own type information, the <c>.BTF</c> section of vmlinux, also readable from a
/// running kernel's memory) into a <see cref="TypeModel"/>.
/// </summary>
public static partial class BtfLoader
{
    /// <summary>Parses a whole BTF blob (header, type and string sections).</summary>
    /// <param name="blob">The blob; read during the call only.</param>
    /// <param name="source">Where the blob came from, for <see cref="TypeModel.Source"/> and error messages.</param>
    /// <param name="limits">Caps on counts read from the blob (<see cref="ParserLimits.Default"/> when null).</param>
    /// <exception cref="BtfFormatException">The blob is not valid BTF; the message names the record and its offset.</exception>
    /// <remarks>Split BTF (kernel modules, whose type ids continue those of vmlinux) is refused: its references
    /// point outside the blob.</remarks>
    public static TypeModel Load(ReadOnlySpan<byte> blob, string source, ParserLimits? limits = null)
    {
        var reader = new BtfReader(blob, source, limits ?? ParserLimits.Default);
        BtfSections sections = reader.ReadHeader();
        List<int> records = reader.IndexTypes(sections);
        return reader.Build(sections, records);
    }
}

/// <summary>Where the sections of a validated blob are (offsets from the start of the blob).</summary>
internal readonly record struct BtfSections(int HeaderLength, int TypeStart, int TypeEnd, int StringStart, int StringLength,
    int LayoutStart, int LayoutLength);

/// <summary>Names a field of a type record in error messages, formatted only when an error is raised.</summary>
internal readonly record struct Where(int Id, string Part, int Index = -1, string? Sub = null)
{
    public override string ToString()
        => Index < 0 ? $"type[{Id}].{Part}" : Sub is null ? $"type[{Id}].{Part}[{Index}]" : $"type[{Id}].{Part}[{Index}].{Sub}";
}

/// <summary>Bounded reads over one BTF blob; every problem becomes a <see cref="BtfFormatException"/> with an offset.</summary>
internal ref struct BtfReader
{
    private readonly ReadOnlySpan<byte> _blob;
    private readonly string _source;
    private readonly ParserLimits _limits;
    private ReadOnlySpan<byte> _strings;
    private Dictionary<uint, string>? _names;

    public BtfReader(ReadOnlySpan<byte> blob, string source, ParserLimits limits)
    {
        _blob = blob;
        _source = source;
        _limits = limits;
    }

    public readonly BtfFormatException Fail(string structure, long offset, string problem) => new(_source, structure, offset, problem);

    public readonly uint U32(int offset, string structure)
    {
        if (offset < 0 || offset > _blob.Length - 4)
        {
            throw Fail(structure, offset, $"needs 4 bytes but the blob ends at 0x{_blob.Length:X}");
        }
        return BinaryPrimitives.ReadUInt32LittleEndian(_blob[offset..]);
    }

    /// <summary>A word inside a record that <see cref="IndexTypes"/> has already bounded.</summary>
    private readonly uint Word(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_blob.Slice(offset, 4));

    public readonly BtfSections ReadHeader()
    {
        if (_blob.Length < MinHeaderSize)
        {
            throw Fail("header", 0, $"needs {MinHeaderSize} bytes but the blob has {_blob.Length}");
        }
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(_blob);
        if (magic != Magic)
        {
            throw Fail("header.magic", MagicOffset, magic == 0x9FEB
                ? "big-endian BTF is not supported"
                : $"0x{magic:X4} is not the BTF magic 0x{Magic:X4}");
        }
        if (_blob[VersionOffset] != SupportedVersion)
        {
            throw Fail("header.version", VersionOffset, $"version {_blob[VersionOffset]} is not supported (only {SupportedVersion})");
        }
        if (_blob.Length > _limits.MaxBtfBytes)
        {
            throw Fail("header", 0, $"the blob has {_blob.Length} bytes, more than the limit of {_limits.MaxBtfBytes}");
        }
        uint hdrLen = U32(HdrLenOffset, "header.hdr_len");
        if (hdrLen < MinHeaderSize || hdrLen > MaxHeaderSize || hdrLen % 4 != 0 || hdrLen > (uint)_blob.Length)
        {
            throw Fail("header.hdr_len", HdrLenOffset, $"header length {hdrLen} is not a multiple of 4 between {MinHeaderSize} and {MaxHeaderSize} inside the blob of {_blob.Length} bytes");
        }
        int typeStart = Section("type", hdrLen, TypeOffOffset, out int typeEnd);
        int stringStart = Section("str", hdrLen, StrOffOffset, out int stringEnd);
        if ((typeStart - (int)hdrLen) % 4 != 0 || (typeEnd - typeStart) % 4 != 0)
        {
            throw Fail("header.type_off", TypeOffOffset, "the type section is not 4-byte aligned");
        }
        if (typeStart < stringEnd && stringStart < typeEnd)
        {
            throw Fail("header.str_off", StrOffOffset, $"the string section 0x{stringStart:X}-0x{stringEnd:X} overlaps the type section 0x{typeStart:X}-0x{typeEnd:X}");
        }
        if (stringEnd == stringStart)
        {
            throw Fail("header.str_len", StrLenOffset, "the string section is empty (it must start and end with a NUL byte)");
        }
        if (_blob[stringStart] != 0 || _blob[stringEnd - 1] != 0)
        {
            throw Fail("strings", stringStart, "the string section must start and end with a NUL byte");
        }
        int layoutStart = 0, layoutEnd = 0;
        if (hdrLen >= LayoutHeaderSize)
        {
            layoutStart = Section("layout", hdrLen, LayoutOffOffset, out layoutEnd);
            if ((layoutEnd - layoutStart) % LayoutEntrySize != 0)
            {
                throw Fail("header.layout_len", LayoutLenOffset, $"layout section length {layoutEnd - layoutStart} is not a multiple of {LayoutEntrySize}");
            }
        }
        return new BtfSections((int)hdrLen, typeStart, typeEnd, stringStart, stringEnd - stringStart, layoutStart, layoutEnd - layoutStart);
    }

    private readonly int Section(string name, uint hdrLen, int fieldOffset, out int end)
    {
        uint off = U32(fieldOffset, $"header.{name}_off");
        uint len = U32(fieldOffset + 4, $"header.{name}_len");
        ulong start = (ulong)hdrLen + off;
        if (start + len > (ulong)_blob.Length)
        {
            throw Fail($"header.{name}_off", fieldOffset, $"the {name} section 0x{start:X}+0x{len:X} runs past the end of the blob at 0x{_blob.Length:X}");
        }
        end = (int)(start + len);
        return (int)start;
    }

    /// <summary>Walks the type section once, checking every record's size; returns the offset of each type id (from 1).</summary>
    public readonly List<int> IndexTypes(BtfSections sections)
    {
        var records = new List<int>(Math.Min((sections.TypeEnd - sections.TypeStart) / 16, 1 << 20));
        int pos = sections.TypeStart;
        while (pos < sections.TypeEnd)
        {
            int id = records.Count + 1;
            if (records.Count >= _limits.MaxTypes)
            {
                throw Fail($"type[{id}]", pos, $"more than the limit of {_limits.MaxTypes} types");
            }
            if (sections.TypeEnd - pos < TypeRecordSize)
            {
                throw Fail($"type[{id}]", pos, $"a type record needs {TypeRecordSize} bytes but the type section ends at 0x{sections.TypeEnd:X}");
            }
            uint info = Word(pos + TypeInfoOffset);
            int kind = Kind(info);
            int vlen = Vlen(info);
            int extra = ExtraSize(kind);
            int entry = EntrySize(kind);
            if (extra < 0 && sections.LayoutLength > 0 && kind > 0 && (kind + 1) * LayoutEntrySize <= sections.LayoutLength)
            {
                // A kind newer than this reader: the layout section says how to step over it.
                int layout = sections.LayoutStart + kind * LayoutEntrySize;
                extra = _blob[layout];
                entry = _blob[layout + 1];
            }
            if (extra < 0 || kind == 0)
            {
                throw Fail($"type[{id}].info", pos + TypeInfoOffset, $"unknown type kind {kind}");
            }
            if (vlen > _limits.MaxTypeMembers)
            {
                throw Fail($"type[{id}].info", pos + TypeInfoOffset, $"{KindName(kind)} has {vlen} members, more than the limit of {_limits.MaxTypeMembers}");
            }
            long length = TypeRecordSize + extra + (long)vlen * entry;
            if (length > sections.TypeEnd - pos)
            {
                throw Fail($"type[{id}]", pos, $"{KindName(kind)} record of {length} bytes (vlen {vlen}) runs past the end of the type section at 0x{sections.TypeEnd:X}");
            }
            records.Add(pos);
            pos += (int)length;
        }
        return records;
    }

    /// <summary>The NUL-terminated name at <paramref name="nameOff"/> in the string section.</summary>
    private string Name(uint nameOff, int fieldOffset, Where structure)
    {
        if (nameOff == 0)
        {
            return "";
        }
        _names ??= new Dictionary<uint, string>();
        if (_names.TryGetValue(nameOff, out string? known))
        {
            return known;
        }
        if (nameOff >= (uint)_strings.Length)
        {
            throw Fail(structure.ToString(), fieldOffset, $"name offset 0x{nameOff:X} is outside the string section of 0x{_strings.Length:X} bytes");
        }
        ReadOnlySpan<byte> tail = _strings[(int)nameOff..];
        int nul = tail[..Math.Min(tail.Length, _limits.MaxNameLength + 1)].IndexOf((byte)0);
        if (nul < 0)
        {
            throw Fail(structure.ToString(), fieldOffset, $"the name at string offset 0x{nameOff:X} is longer than the limit of {_limits.MaxNameLength} bytes");
        }
        string name = Encoding.UTF8.GetString(tail[..nul]);
        _names[nameOff] = name;
        return name;
    }

    public TypeModel Build(BtfSections sections, List<int> records)
    {
        _strings = _blob.Slice(sections.StringStart, sections.StringLength);
        int count = records.Count;
        var infos = new TypeInfo?[count + 1];
        var aliasOf = new int[count + 1];
        var kinds = new byte[count + 1];
        infos[0] = new TypeInfo(0, "void", TypeKind.Void);
        aliasOf[0] = -1;

        // Pass 1: one object per type id; qualifiers become aliases of their target.
        for (int id = 1; id <= count; id++)
        {
            int pos = records[id - 1];
            uint info = Word(pos + TypeInfoOffset);
            int kind = Kind(info);
            kinds[id] = (byte)kind;
            aliasOf[id] = -1;
            if (kind is KindConst or KindVolatile or KindRestrict or KindTypeTag)
            {
                uint target = Word(pos + TypeSizeOrType);
                if (target > (uint)count)
                {
                    throw Fail($"type[{id}].type", pos + TypeSizeOrType, $"{KindName(kind)} refers to type id {target}, outside the {count} types of the blob");
                }
                aliasOf[id] = (int)target;
                continue;
            }
            TypeKind typeKind = kind switch
            {
                KindInt => TypeKind.Int,
                KindPtr => TypeKind.Pointer,
                KindArray => TypeKind.Array,
                KindStruct => TypeKind.Struct,
                KindUnion => TypeKind.Union,
                KindEnum or KindEnum64 => TypeKind.Enum,
                KindFwd => TypeKind.Forward,
                KindTypedef => TypeKind.Typedef,
                KindFunc or KindFuncProto => TypeKind.Function,
                KindFloat => TypeKind.Float,
                _ => TypeKind.Other,
            };
            string name = Name(Word(pos + TypeNameOff), pos + TypeNameOff, new Where(id, "name_off"));
            infos[id] = new TypeInfo(id, name, typeKind);
        }

        // Pass 2: scalars and references.
        int pointerSize = 8;
        var intBits = new Dictionary<TypeInfo, (int Bits, int Offset)>();
        for (int id = 1; id <= count; id++)
        {
            TypeInfo? type = infos[id];
            if (type is null)
            {
                continue;
            }
            int pos = records[id - 1];
            int kind = kinds[id];
            uint sizeOrType = Word(pos + TypeSizeOrType);
            switch (kind)
            {
                case KindInt:
                    uint encoding = Word(pos + TypeRecordSize);
                    type.Size = (int)Math.Min(sizeOrType, 1024);
                    type.IsSigned = ((encoding >> 24) & IntSigned) != 0;
                    int bits = (int)(encoding & 0xFF);
                    int bitOffset = (int)((encoding >> 16) & 0xFF);
                    if (bitOffset != 0 || bits != type.Size * 8)
                    {
                        intBits[type] = (bits, bitOffset);
                    }
                    if (type.Name is "long unsigned int" or "long int" && sizeOrType is 4 or 8)
                    {
                        pointerSize = (int)sizeOrType;
                    }
                    break;
                case KindStruct or KindUnion or KindEnum or KindEnum64 or KindFloat or KindDatasec:
                    if (sizeOrType > int.MaxValue)
                    {
                        throw Fail($"type[{id}].size", pos + TypeSizeOrType, $"size {sizeOrType} is too large");
                    }
                    type.Size = (int)sizeOrType;
                    break;
                case KindPtr or KindTypedef or KindFunc or KindFuncProto or KindVar or KindDeclTag:
                    type.Target = Resolve(infos, aliasOf, sizeOrType, pos + TypeSizeOrType, new Where(id, "type"));
                    break;
                case KindArray:
                    type.Target = Resolve(infos, aliasOf, Word(pos + TypeRecordSize), pos + TypeRecordSize, new Where(id, "array.type"));
                    Resolve(infos, aliasOf, Word(pos + TypeRecordSize + 4), pos + TypeRecordSize + 4, new Where(id, "array.index_type"));
                    uint elements = Word(pos + TypeRecordSize + 8);
                    if (elements > int.MaxValue)
                    {
                        throw Fail($"type[{id}].array.nelems", pos + TypeRecordSize + 8, $"{elements} elements is too many");
                    }
                    type.ArrayLength = (int)elements;
                    break;
            }
        }

        // Pass 3: members, enumerators, parameters (typedef chains are now linked, for old-style bitfields).
        for (int id = 1; id <= count; id++)
        {
            TypeInfo? type = infos[id];
            if (type is null)
            {
                continue;
            }
            int pos = records[id - 1];
            int kind = kinds[id];
            uint info = Word(pos + TypeInfoOffset);
            int vlen = Vlen(info);
            bool kindFlag = KindFlag(info);
            int entries = pos + TypeRecordSize + ExtraSize(kind);
            switch (kind)
            {
                case KindStruct or KindUnion:
                    var fields = new FieldInfo[vlen];
                    for (int j = 0; j < vlen; j++)
                    {
                        int at = entries + j * 12;
                        string name = Name(Word(at), at, new Where(id, "member", j, "name_off"));
                        TypeInfo memberType = Resolve(infos, aliasOf, Word(at + 4), at + 4, new Where(id, "member", j, "type"));
                        uint offset = Word(at + 8);
                        long bitOffset = kindFlag ? offset & 0xFFFFFF : offset;
                        int bitSize = kindFlag ? (int)(offset >> 24) : 0;
                        if (!kindFlag && intBits.TryGetValue(memberType.Resolve(), out (int Bits, int Offset) encoding))
                        {
                            bitSize = encoding.Bits;
                            bitOffset += encoding.Offset;
                        }
                        fields[j] = new FieldInfo(name, bitOffset, bitSize, memberType);
                    }
                    type.Fields = fields;
                    break;
                case KindEnum or KindEnum64:
                    int size = kind == KindEnum ? 8 : 12;
                    var values = new Dictionary<string, long>(vlen, StringComparer.Ordinal);
                    for (int j = 0; j < vlen; j++)
                    {
                        int at = entries + j * size;
                        string name = Name(Word(at), at, new Where(id, "enum", j, "name_off"));
                        uint low = Word(at + 4);
                        long value = kind == KindEnum
                            ? (kindFlag ? unchecked((int)low) : low)
                            : unchecked((long)(((ulong)Word(at + 8) << 32) | low));
                        values.TryAdd(name, value);
                    }
                    type.IsSigned = kindFlag;
                    type.EnumValues = values;
                    break;
                case KindFuncProto:
                    for (int j = 0; j < vlen; j++)
                    {
                        int at = entries + j * 8;
                        Name(Word(at), at, new Where(id, "param", j, "name_off"));
                        Resolve(infos, aliasOf, Word(at + 4), at + 4, new Where(id, "param", j, "type"));
                    }
                    break;
                case KindDatasec:
                    for (int j = 0; j < vlen; j++)
                    {
                        int at = entries + j * 12;
                        Resolve(infos, aliasOf, Word(at), at, new Where(id, "var", j, "type"));
                    }
                    break;
            }
        }

        // Pass 4: sizes that come from other types (pointers, typedefs, arrays, variables), depth-limited.
        var sized = new bool[count + 1];
        var types = new List<TypeInfo>(count + 1);
        for (int id = 0; id <= count; id++)
        {
            if (infos[id] is { } type)
            {
                if (type.Kind == TypeKind.Pointer)
                {
                    type.Size = pointerSize;
                }
                SizeOf(type, kinds, records, sized, 0);
                types.Add(type);
            }
        }
        return new TypeModel(_source, types, count, null);
    }

    /// <summary>The type object for a type id, skipping qualifiers (depth-limited, so qualifier cycles fail).</summary>
    private readonly TypeInfo Resolve(TypeInfo?[] infos, int[] aliasOf, uint typeId, int fieldOffset, Where structure)
    {
        if (typeId >= (uint)infos.Length)
        {
            throw Fail(structure.ToString(), fieldOffset, $"type id {typeId} is outside the {infos.Length - 1} types of the blob");
        }
        int id = (int)typeId;
        for (int depth = 0; aliasOf[id] >= 0; depth++)
        {
            if (depth >= _limits.MaxTypeDepth)
            {
                throw Fail(structure.ToString(), fieldOffset, $"the qualifier chain from type id {typeId} is deeper than {_limits.MaxTypeDepth} (cyclic?)");
            }
            id = aliasOf[id];
        }
        return infos[id]!;
    }

    private readonly int SizeOf(TypeInfo type, byte[] kinds, List<int> records, bool[] sized, int depth)
    {
        if (sized[type.Id])
        {
            return type.Size;
        }
        if (depth >= _limits.MaxTypeDepth)
        {
            throw Fail($"type[{type.Id}]", records[type.Id - 1], $"the type chain through '{type.Name}' is deeper than {_limits.MaxTypeDepth} (cyclic typedef or array?)");
        }
        long size = type.Size;
        if (type.Target is { } target)
        {
            if (type.Kind == TypeKind.Typedef || (type.Kind == TypeKind.Other && kinds[type.Id] == KindVar))
            {
                size = SizeOf(target, kinds, records, sized, depth + 1);
            }
            else if (type.Kind == TypeKind.Array)
            {
                size = (long)SizeOf(target, kinds, records, sized, depth + 1) * type.ArrayLength;
                if (size > int.MaxValue)
                {
                    throw Fail($"type[{type.Id}]", records[type.Id - 1], $"array of {type.ArrayLength} elements of {target.Size} bytes is too large");
                }
            }
        }
        type.Size = (int)size;
        sized[type.Id] = true;
        return type.Size;
    }
}
